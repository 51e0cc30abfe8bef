//! `packer inspect`: what a blob holds and what it costs.

use std::fmt::Write;
use walsh_spec::blob::{Blob, hex};
use walsh_spec::config::TensorKind;

fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

fn millions(n: u64) -> String {
    format!("{:.2}M", n as f64 / 1e6)
}

/// SHA-256 of `bytes`: of a whole file, what `sha256sum` prints.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// The report as text on the blob `file` holds; `tensors` lists every tensor too.
pub fn report(blob: &Blob<'_>, file: &[u8], tensors: bool) -> String {
    let c = &blob.config;
    let (emb, brain) = c.param_counts();
    let total = emb + brain;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "model        {}",
        if c.name.is_empty() {
            "(unnamed)"
        } else {
            &c.name
        }
    );
    let _ = writeln!(
        s,
        "config       {} · {} layers · D {} · {} heads (hd {}) · MLP {} · block {} · vocab {}",
        c.algebra.name(),
        c.n_layer,
        c.n_embd,
        c.n_head,
        c.head_dim(),
        c.mlp_hidden(),
        c.block_size,
        c.vocab_size
    );
    let emb_desc = match c.embedding {
        walsh_spec::config::Embedding::Standard => "standard (tied)".to_string(),
        walsh_spec::config::Embedding::Hash => format!(
            "hash, {} buckets × 2 (tied, factorized logits)",
            c.hash_buckets
        ),
    };
    let _ = writeln!(s, "embeddings   {emb_desc}");
    let _ = writeln!(
        s,
        "head mixing  {}",
        if c.head_mixing { "on" } else { "off" }
    );
    let _ = writeln!(
        s,
        "parameters   {} total / {} brain / {} embedding",
        millions(total),
        millions(brain),
        millions(emb)
    );
    let count = |pred: &dyn Fn(&str, TensorKind) -> bool| -> u64 {
        blob.tensors
            .iter()
            .filter(|t| pred(&t.name, t.kind))
            .map(|t| t.numel() as u64)
            .sum()
    };
    let scales = count(&|_, k| k == TensorKind::AlgebraScale);
    let mixing = count(&|n, _| n.contains(".attn.mix."));
    let norms = count(&|n, _| n.contains("norm."));
    let _ = writeln!(
        s,
        "brain        {} = {} ternary + {} α/β scales + {} head mixing + {} norm gains",
        millions(brain),
        millions(count(&|_, k| k == TensorKind::AlgebraWeight)),
        millions(scales),
        millions(mixing),
        millions(norms)
    );
    let ternary: u64 = blob
        .tensors
        .iter()
        .filter(|t| t.kind == TensorKind::AlgebraWeight)
        .map(|t| t.numel() as u64)
        .sum();
    let _ = writeln!(
        s,
        "ternary      {} weights ({:.1}% of all parameters)",
        millions(ternary),
        100.0 * ternary as f64 / total.max(1) as f64
    );
    let tensor_bytes: u64 = blob.tensors.iter().map(|t| t.bytes.len() as u64).sum();
    let _ = writeln!(
        s,
        "size         {} ({} tensors, {} tokenizer ({}), rest header/table/padding/checksum)",
        human(blob.total_len as u64),
        human(tensor_bytes),
        human(blob.tokenizer.len() as u64),
        blob.tokenizer.form()
    );
    let _ = writeln!(
        s,
        "compression  {:.1} bits per parameter in the tensors (f32 would take 32 bits, {}; int8 8 bits, {})",
        (8 * tensor_bytes) as f64 / total.max(1) as f64,
        human(4 * total),
        human(total)
    );
    let packing = blob
        .tensors
        .iter()
        .find(|t| t.kind == TensorKind::AlgebraWeight)
        .map_or("-", |t| t.dtype.name());
    let _ = writeln!(s, "packing      {packing}");
    let embeddings = blob
        .tensors
        .iter()
        .find(|t| t.kind == TensorKind::Embedding)
        .map_or("-", |t| t.dtype.name());
    let _ = writeln!(
        s,
        "format       version {}, embeddings stored as {embeddings}",
        blob.version
    );
    let _ = writeln!(
        s,
        "sha256       {} (of the file, as sha256sum prints it)",
        hex(&sha256(file))
    );
    let _ = writeln!(
        s,
        "checksum     {} (SPEC §4: the SHA-256 of all but the last 32 bytes, which hold it; model_info's sha256)",
        hex(&blob.sha256)
    );
    if tensors {
        let _ = writeln!(
            s,
            "\n{:<32} {:<11} {:<16} {:>10}",
            "tensor", "dtype", "shape", "bytes"
        );
        for t in &blob.tensors {
            let _ = writeln!(
                s,
                "{:<32} {:<11} {:<16} {:>10}",
                t.name,
                t.dtype.name(),
                format!("{:?}", t.shape),
                t.bytes.len()
            );
        }
    }
    s
}
