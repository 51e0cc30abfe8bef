// ---------------------------------------------------------------- attention on tensor cores
// The flash attention of attention.cu with its products on tensor cores: mma.sync m16n8k8 with TF32
// operands and f32 accumulation, for the TF32 and bf16 GEMM modes (the f32 mode keeps the exact
// CUDA-core kernels). Same inputs, outputs and saved row log-sum-exps as those kernels.
//
// A warp owns 16 rows (queries in the forward and dq, keys in dk/dv) and walks the other side in
// n-blocks of 8 through shared memory. Fragments, per lane (g = lane / 4, i = lane % 4; PTX ISA,
// "Matrix fragments for mma.m16n8k8" with .tf32): A 16×8 row-major: a0 (g, i), a1 (g+8, i),
// a2 (g, i+4), a3 (g+8, i+4); B 8×8 (k × n): b0 (i, g), b1 (i+4, g); C 16×8: c0 (g, 2i),
// c1 (g, 2i+1), c2 (g+8, 2i), c3 (g+8, 2i+1).
//
// A score tile C (rows × 8 columns) feeds the next product as its A operand, with the columns as
// the k dimension. Instead of moving values between lanes, the k slots are renumbered: slot i is
// column 2i and slot i+4 column 2i+1, so a lane's c0, c2, c1, c3 are exactly its a0, a1, a2, a3,
// and the B operand is read from shared memory in the same order (rows 2i and 2i+1 of the tile).
// The sum over k does not care about the order.
//
// Scores are kept in base 2: the query (or key) rows are scaled by log2(e)/√hd at load, so that
// every weight is one ex2 (common.cu: a single MUFU instruction; expf is range reduction around it),
// and the saved log-sum-exps are converted back to natural logs, as the CPU kernels keep them.

// mma.sync with TF32 operands needs compute capability 8.0; below it these kernels do not exist
// and the backend keeps the CUDA-core ones.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

#define TC_WARPS 4
#define TC_ROWS (16 * TC_WARPS)
#define TC_TILE 32

__device__ __forceinline__ u32 tf32(float x) {
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

// c += A · B on one 16×8×8 tile.
__device__ __forceinline__ void mma_tf32(float* c, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Element (t, c) of head h of x [B, T, d], zero past T or hd.
__device__ __forceinline__ float head_at(const float* x, u64 b, u32 t, u32 c, u32 seq, u32 d, u32 h, u32 hd) {
    return (t < seq && c < hd) ? x[(b * seq + t) * d + (u64)h * hd + c] : 0.0f;
}

// Rows r0..r0+TC_TILE of head h of x into tile[TC_TILE][HD + 4] as TF32 bit patterns, converted
// once here rather than by every warp at every use (the padding keeps the fragment reads below
// free of bank conflicts for every HD). Four channels a load where the head is whole and aligned.
template <int HD>
__device__ void tc_load_tile(u32 (*tile)[HD + 4], const float* x, u64 b, u32 r0, u32 seq, u32 d, u32 h, u32 hd) {
    if (hd == HD && HD % 4 == 0 && d % 4 == 0) {
        for (u32 j = threadIdx.x; j < TC_TILE * HD / 4; j += blockDim.x) {
            u32 r = j / (HD / 4), c = 4 * (j % (HD / 4));
            u32 t = r0 + r;
            float4 v = t < seq ? *(const float4*)(x + (b * seq + t) * d + (u64)h * hd + c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            tile[r][c] = tf32(v.x);
            tile[r][c + 1] = tf32(v.y);
            tile[r][c + 2] = tf32(v.z);
            tile[r][c + 3] = tf32(v.w);
        }
        return;
    }
    for (u32 j = threadIdx.x; j < TC_TILE * HD; j += blockDim.x) {
        u32 r = j / HD, c = j % HD;
        tile[r][c] = tf32(head_at(x, b, r0 + r, c, seq, d, h, hd));
    }
}

// A fragments of rows (r, r + 8) of a head: frag[kc] covers channels kc·8 .. kc·8 + 7.
template <int HD>
__device__ void tc_load_a(u32 (*frag)[4], const float* x, u64 b, u32 r, u32 seq, u32 d, u32 h, u32 hd, float scale) {
    u32 i = threadIdx.x % 4;
#pragma unroll
    for (int kc = 0; kc < HD / 8; kc++) {
        frag[kc][0] = tf32(head_at(x, b, r, kc * 8 + i, seq, d, h, hd) * scale);
        frag[kc][1] = tf32(head_at(x, b, r + 8, kc * 8 + i, seq, d, h, hd) * scale);
        frag[kc][2] = tf32(head_at(x, b, r, kc * 8 + i + 4, seq, d, h, hd) * scale);
        frag[kc][3] = tf32(head_at(x, b, r + 8, kc * 8 + i + 4, seq, d, h, hd) * scale);
    }
}

// s = rows · tile[n0 .. n0+8]ᵀ over the channels (the tile's rows are the 8 columns).
template <int HD>
__device__ __forceinline__ void tc_scores(float* s, const u32 (*a)[4], const u32 (*tile)[HD + 4], u32 n0) {
    u32 g = (threadIdx.x % 32) / 4, i = threadIdx.x % 4;
    s[0] = s[1] = s[2] = s[3] = 0.0f;
#pragma unroll
    for (int kc = 0; kc < HD / 8; kc++)
        mma_tf32(s, a[kc][0], a[kc][1], a[kc][2], a[kc][3], tile[n0 + g][kc * 8 + i], tile[n0 + g][kc * 8 + i + 4]);
}

// acc[nc] += P · tile[n0 .. n0+8] where p holds a score tile's C layout (the renumbered k slots).
template <int HD>
__device__ __forceinline__ void tc_accumulate(float (*acc)[4], const float* p, const u32 (*tile)[HD + 4], u32 n0) {
    u32 g = (threadIdx.x % 32) / 4, i = threadIdx.x % 4;
    u32 a0 = tf32(p[0]), a1 = tf32(p[2]), a2 = tf32(p[1]), a3 = tf32(p[3]);
#pragma unroll
    for (int nc = 0; nc < HD / 8; nc++)
        mma_tf32(acc[nc], a0, a1, a2, a3, tile[n0 + 2 * i][nc * 8 + g], tile[n0 + 2 * i + 1][nc * 8 + g]);
}

__device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffff, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffff, x, 1);
    return x + __shfl_xor_sync(0xffffffff, x, 2);
}

// Adds (or writes) a C-layout accumulator of rows (r, r + 8) into head h of y, times `scale`.
template <int HD>
__device__ void tc_store(float* y, const float (*acc)[4], u64 b, u32 r, u32 seq, u32 d, u32 h, u32 hd, float scale, bool add) {
    u32 i = threadIdx.x % 4;
#pragma unroll
    for (int nc = 0; nc < HD / 8; nc++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            u32 t = r + (e >= 2 ? 8 : 0), c = nc * 8 + 2 * i + (e & 1);
            if (t < seq && c < hd) {
                float* p = y + (b * seq + t) * d + (u64)h * hd + c;
                *p = add ? *p + acc[nc][e] * scale : acc[nc][e] * scale;
            }
        }
    }
}

// Where a warp of these kernels works: (batch, head) bh = blockIdx.x of B·nh, d = nh·hd the row
// width, the block's TC_ROWS rows from `first` (queries; keys in dk/dv), the warp's 16 from
// `row0`, and the lane's fragment rows r0 = row0 + g and r1 = r0 + 8 (g = lane / 4, i = lane % 4).
struct TcWarp {
    u32 bh, h;
    u64 b;
    u32 d, g, i, first, row0, r0, r1;
};
__device__ __forceinline__ TcWarp tc_warp(u32 nh, u32 hd) {
    u32 lane = threadIdx.x % 32, first = blockIdx.y * TC_ROWS, row0 = first + (threadIdx.x / 32) * 16;
    return TcWarp{blockIdx.x, blockIdx.x % nh, blockIdx.x / nh, nh * hd, lane / 4, lane % 4, first, row0, row0 + lane / 4, row0 + lane / 4 + 8};
}

template <int HD>
__device__ void flash_forward_tc(float* out, float* lse, const float* q, const float* k, const float* v, u32 seq, u32 nh, u32 hd) {
    __shared__ u32 ks[TC_TILE][HD + 4];
    __shared__ u32 vs[TC_TILE][HD + 4];
    auto [bh, h, b, d, g, i, first, q0, r0, r1] = tc_warp(nh, hd);
    u32 qa[HD / 8][4];
    tc_load_a<HD>(qa, q, b, r0, seq, d, h, hd, rsqrtf((float)hd) * LOG2E);
    float o[HD / 8][4];
#pragma unroll
    for (int nc = 0; nc < HD / 8; nc++) o[nc][0] = o[nc][1] = o[nc][2] = o[nc][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    u32 end = min(first + TC_ROWS, seq);
    for (u32 s0 = 0; s0 < end; s0 += TC_TILE) {
        __syncthreads();
        tc_load_tile<HD>(ks, k, b, s0, seq, d, h, hd);
        tc_load_tile<HD>(vs, v, b, s0, seq, d, h, hd);
        __syncthreads();
        if (q0 >= seq) continue;
        // The whole tile's scores first, so that the running max and the rescaling of o come
        // once a tile rather than once an 8-key block. Blocks past the warp's last query are
        // skipped (their scores stay −∞ and their weights 0). Only a tile reaching past the
        // warp's first query needs the causal mask (keys past the end lie past every query).
        bool diagonal = s0 + TC_TILE - 1 > q0;
        float s[TC_TILE / 8][4];
#pragma unroll
        for (int nb = 0; nb < TC_TILE / 8; nb++) {
            u32 n0 = 8 * nb;
            s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = -INFINITY;
            if (s0 + n0 > q0 + 15) continue;
            tc_scores<HD>(s[nb], qa, ks, n0);
            if (!diagonal) continue;
            u32 c = s0 + n0 + 2 * i;
            // Causal (and past-the-end) mask; key 0 is in the first tile, so m is finite after it.
            if (c > r0) s[nb][0] = -INFINITY;
            if (c + 1 > r0) s[nb][1] = -INFINITY;
            if (c > r1) s[nb][2] = -INFINITY;
            if (c + 1 > r1) s[nb][3] = -INFINITY;
        }
        float t0m = -INFINITY, t1m = -INFINITY;
#pragma unroll
        for (int nb = 0; nb < TC_TILE / 8; nb++) {
            t0m = fmaxf(t0m, fmaxf(s[nb][0], s[nb][1]));
            t1m = fmaxf(t1m, fmaxf(s[nb][2], s[nb][3]));
        }
        float n0m = fmaxf(m0, quad_max(t0m));
        float n1m = fmaxf(m1, quad_max(t1m));
        float c0 = ex2(m0 - n0m), c1 = ex2(m1 - n1m);
        m0 = n0m;
        m1 = n1m;
        l0 *= c0;
        l1 *= c1;
#pragma unroll
        for (int nc = 0; nc < HD / 8; nc++) {
            o[nc][0] *= c0;
            o[nc][1] *= c0;
            o[nc][2] *= c1;
            o[nc][3] *= c1;
        }
#pragma unroll
        for (int nb = 0; nb < TC_TILE / 8; nb++) {
            if (s0 + 8 * nb > q0 + 15) continue;
            s[nb][0] = ex2(s[nb][0] - m0);
            s[nb][1] = ex2(s[nb][1] - m0);
            s[nb][2] = ex2(s[nb][2] - m1);
            s[nb][3] = ex2(s[nb][3] - m1);
            l0 += s[nb][0] + s[nb][1];
            l1 += s[nb][2] + s[nb][3];
            tc_accumulate<HD>(o, s[nb], vs, 8 * nb);
        }
    }
    if (q0 >= seq) return;
    l0 = quad_sum(l0);
    l1 = quad_sum(l1);
#pragma unroll
    for (int nc = 0; nc < HD / 8; nc++) {
        o[nc][0] /= l0;
        o[nc][1] /= l0;
        o[nc][2] /= l1;
        o[nc][3] /= l1;
    }
    tc_store<HD>(out, o, b, r0, seq, d, h, hd, 1.0f, false);
    if (i == 0) {
        if (r0 < seq) lse[(u64)bh * seq + r0] = (m0 + log2f(l0)) * LN2;
        if (r1 < seq) lse[(u64)bh * seq + r1] = (m1 + log2f(l1)) * LN2;
    }
}

// dq[t] += scale · Σ_s p_ts (dO_t·v_s − D_t) k_s; writes D_t = dO_t·O_t to dsum.
template <int HD>
__device__ void flash_backward_q_tc(float* dq, float* dsum, const float* dout, const float* out, const float* q, const float* k, const float* v, const float* lse, u32 seq, u32 nh, u32 hd) {
    __shared__ u32 ks[TC_TILE][HD + 4];
    __shared__ u32 vs[TC_TILE][HD + 4];
    auto [bh, h, b, d, g, i, first, q0, r0, r1] = tc_warp(nh, hd);
    float scale = rsqrtf((float)hd);
    u32 qa[HD / 8][4], da[HD / 8][4];
    tc_load_a<HD>(qa, q, b, r0, seq, d, h, hd, scale * LOG2E);
    tc_load_a<HD>(da, dout, b, r0, seq, d, h, hd, 1.0f);
    // D in f32 from the unrounded rows: this lane's channels, then the quad's.
    float D0 = 0.0f, D1 = 0.0f;
    for (u32 c = i; c < HD; c += 4) {
        D0 += head_at(dout, b, r0, c, seq, d, h, hd) * head_at(out, b, r0, c, seq, d, h, hd);
        D1 += head_at(dout, b, r1, c, seq, d, h, hd) * head_at(out, b, r1, c, seq, d, h, hd);
    }
    D0 = quad_sum(D0);
    D1 = quad_sum(D1);
    float L0 = r0 < seq ? lse[(u64)bh * seq + r0] * LOG2E : 0.0f;
    float L1 = r1 < seq ? lse[(u64)bh * seq + r1] * LOG2E : 0.0f;
    if (i == 0) {
        if (r0 < seq) dsum[(u64)bh * seq + r0] = D0;
        if (r1 < seq) dsum[(u64)bh * seq + r1] = D1;
    }
    float acc[HD / 8][4];
#pragma unroll
    for (int nc = 0; nc < HD / 8; nc++) acc[nc][0] = acc[nc][1] = acc[nc][2] = acc[nc][3] = 0.0f;
    u32 end = min(first + TC_ROWS, seq);
    for (u32 s0 = 0; s0 < end; s0 += TC_TILE) {
        __syncthreads();
        tc_load_tile<HD>(ks, k, b, s0, seq, d, h, hd);
        tc_load_tile<HD>(vs, v, b, s0, seq, d, h, hd);
        __syncthreads();
        if (q0 >= seq) continue;
        for (u32 n0 = 0; n0 < TC_TILE && s0 + n0 <= q0 + 15; n0 += 8) {
            float s[4], dp[4];
            tc_scores<HD>(s, qa, ks, n0);
            tc_scores<HD>(dp, da, vs, n0);
            s[0] = ex2(s[0] - L0) * (dp[0] - D0);
            s[1] = ex2(s[1] - L0) * (dp[1] - D0);
            s[2] = ex2(s[2] - L1) * (dp[2] - D1);
            s[3] = ex2(s[3] - L1) * (dp[3] - D1);
            // The causal mask where the block reaches past the warp's first query.
            if (s0 + n0 + 7 > q0) {
                u32 c = s0 + n0 + 2 * i;
                if (c > r0) s[0] = 0.0f;
                if (c + 1 > r0) s[1] = 0.0f;
                if (c > r1) s[2] = 0.0f;
                if (c + 1 > r1) s[3] = 0.0f;
            }
            tc_accumulate<HD>(acc, s, ks, n0);
        }
    }
    if (q0 >= seq) return;
    tc_store<HD>(dq, acc, b, r0, seq, d, h, hd, scale, true);
}

// dk[s] += scale · Σ_{t≥s} p_ts (dO_t·v_s − D_t) q_t, dv[s] += Σ_{t≥s} p_ts dO_t: a warp's 16 keys
// against the queries in n-blocks of 8, the transposed scores Sᵀ = K·Qᵀ straight from the mma.
template <int HD>
__device__ void flash_backward_kv_tc(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v, const float* lse, const float* dsum, u32 seq, u32 nh, u32 hd) {
    __shared__ u32 qs[TC_TILE][HD + 4];
    __shared__ u32 dos[TC_TILE][HD + 4];
    __shared__ float ls[TC_TILE], Ds[TC_TILE];
    auto [bh, h, b, d, g, i, first, k0, r0, r1] = tc_warp(nh, hd);
    float scale = rsqrtf((float)hd);
    u32 ka[HD / 8][4], va[HD / 8][4];
    tc_load_a<HD>(ka, k, b, r0, seq, d, h, hd, scale * LOG2E);
    tc_load_a<HD>(va, v, b, r0, seq, d, h, hd, 1.0f);
    float gk[HD / 8][4], gv[HD / 8][4];
#pragma unroll
    for (int nc = 0; nc < HD / 8; nc++)
#pragma unroll
        for (int e = 0; e < 4; e++) gk[nc][e] = gv[nc][e] = 0.0f;
    for (u32 t0 = first; t0 < seq; t0 += TC_TILE) {
        __syncthreads();
        tc_load_tile<HD>(qs, q, b, t0, seq, d, h, hd);
        tc_load_tile<HD>(dos, dout, b, t0, seq, d, h, hd);
        if (threadIdx.x < TC_TILE) {
            u32 t = t0 + threadIdx.x;
            ls[threadIdx.x] = t < seq ? lse[(u64)bh * seq + t] * LOG2E : 0.0f;
            Ds[threadIdx.x] = t < seq ? dsum[(u64)bh * seq + t] : 0.0f;
        }
        __syncthreads();
        if (k0 >= seq) continue;
        for (u32 n0 = 0; n0 < TC_TILE; n0 += 8) {
            // Queries all before this warp's first key see none of its keys.
            if (t0 + n0 + 7 < k0) continue;
            float s[4], dp[4];
            tc_scores<HD>(s, ka, qs, n0);
            tc_scores<HD>(dp, va, dos, n0);
            u32 j = n0 + 2 * i, t = t0 + j;
            float p[4];
            p[0] = ex2(s[0] - ls[j]);
            p[1] = ex2(s[1] - ls[j + 1]);
            p[2] = ex2(s[2] - ls[j]);
            p[3] = ex2(s[3] - ls[j + 1]);
            // Query t sees key r when t ≥ r; queries past the end are zero rows with L = D = 0.
            // Only a block reaching below the warp's last key or past the end needs the mask.
            if (t0 + n0 < k0 + 15 || t0 + n0 + 8 > seq) {
                bool in0 = t < seq, in1 = t + 1 < seq;
                if (!(in0 && t >= r0)) p[0] = 0.0f;
                if (!(in1 && t + 1 >= r0)) p[1] = 0.0f;
                if (!(in0 && t >= r1)) p[2] = 0.0f;
                if (!(in1 && t + 1 >= r1)) p[3] = 0.0f;
            }
            s[0] = p[0] * (dp[0] - Ds[j]);
            s[1] = p[1] * (dp[1] - Ds[j + 1]);
            s[2] = p[2] * (dp[2] - Ds[j]);
            s[3] = p[3] * (dp[3] - Ds[j + 1]);
            tc_accumulate<HD>(gv, p, dos, n0);
            tc_accumulate<HD>(gk, s, qs, n0);
        }
    }
    if (k0 >= seq) return;
    tc_store<HD>(dk, gk, b, r0, seq, d, h, hd, scale, true);
    tc_store<HD>(dv, gv, b, r0, seq, d, h, hd, 1.0f, true);
}

#define FLASH_TC_KERNELS(HD) \
extern "C" __global__ void __launch_bounds__(32 * TC_WARPS) flash_forward_tc_##HD(float* out, float* lse, const float* q, const float* k, const float* v, u32 seq, u32 nh, u32 hd) { \
    flash_forward_tc<HD>(out, lse, q, k, v, seq, nh, hd); } \
extern "C" __global__ void __launch_bounds__(32 * TC_WARPS) flash_backward_q_tc_##HD(float* dq, float* dsum, const float* dout, const float* out, const float* q, const float* k, const float* v, const float* lse, u32 seq, u32 nh, u32 hd) { \
    flash_backward_q_tc<HD>(dq, dsum, dout, out, q, k, v, lse, seq, nh, hd); } \
extern "C" __global__ void __launch_bounds__(32 * TC_WARPS) flash_backward_kv_tc_##HD(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v, const float* lse, const float* dsum, u32 seq, u32 nh, u32 hd) { \
    flash_backward_kv_tc<HD>(dk, dv, dout, q, k, v, lse, dsum, seq, nh, hd); }

FLASH_TC_KERNELS(8)
FLASH_TC_KERNELS(16)
FLASH_TC_KERNELS(32)
FLASH_TC_KERNELS(64)

#endif
