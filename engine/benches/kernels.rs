//! Native speed of the engine's integer kernels (SPEC §2.6), per multiply-add:
//! `cargo bench -p walsh-engine --bench kernels`. Throughput is in multiply-adds (criterion's
//! "elem/s"); the wasm instruction counts of the same work are in docs/BENCHMARKS.md (the
//! harness's `profile` test).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use walsh_engine::attention::{AttentionScratch, attend};
use walsh_engine::embedding_table::{EmbeddingTable, HeadScratch};
use walsh_engine::kv_cache::KvCache;
use walsh_engine::ternary_linear::{TernaryLinear, TernaryScratch};
use walsh_spec::config::Algebra;

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 1999) as f32 - 999.0) / 333.0)
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernels");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));

    // Tied head of a standard-embedding model: 50,257 × 512.
    let (v, d) = (50_257, 512);
    let table = EmbeddingTable::new(&values(v * d, 1), d);
    let h = values(d, 2);
    let mut logits = vec![0.0; v];
    let mut hs = HeadScratch::default();
    g.throughput(Throughput::Elements((v * d) as u64));
    g.bench_function("head 50257x512", |b| {
        b.iter(|| table.logits(black_box(&h), &mut logits, &mut hs))
    });

    // Ternary linears of the seed configs (MACs as run: octonion runs 32 products of combined
    // blocks, `octonion_product`).
    for (name, algebra, inp, out) in [
        ("hadamard 512x512", Algebra::Hadamard, 512, 512),
        ("hadamard 512x1376", Algebra::Hadamard, 512, 1376),
        ("octonion 512x512", Algebra::Octonion, 512, 512),
        ("octonion 512x1368", Algebra::Octonion, 512, 1368),
    ] {
        let a = algebra.dim();
        let numel = a * (out / a) * (inp / a);
        let wq: Vec<i8> = (0..numel)
            .map(|i| ((i * 7 + i / 5) % 3) as i8 - 1)
            .collect();
        let lin = TernaryLinear::new(algebra, inp, out, &wq, vec![1.0; inp], vec![1.0; out]);
        let x = values(inp, 3);
        let mut y = vec![0.0; out];
        let mut s = TernaryScratch::default();
        g.throughput(Throughput::Elements(lin.macs() as u64));
        g.bench_function(format!("ternary {name}"), |b| {
            b.iter(|| lin.forward_row(black_box(&x), &mut y, &mut s))
        });
    }

    // Attention of one head over 128 cached positions: scores and weighted sum, 2·128·hd MACs.
    for (heads, hd) in [(32, 16), (8, 64)] {
        let dim = heads * hd;
        let mut cache = KvCache::new(1, 256, dim, heads);
        for p in 0..128 {
            cache.write(0, p, &values(dim, p), &values(dim, p + 1000));
        }
        cache.advance(128);
        let q = values(hd, 5);
        let mut out = vec![0.0; hd];
        let mut s = AttentionScratch::default();
        g.throughput(Throughput::Elements((2 * 128 * hd) as u64));
        g.bench_function(format!("attention hd {hd}, 128 positions"), |b| {
            b.iter(|| attend(&cache, 0, 0, black_box(&q), 128, &mut out, &mut s))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
