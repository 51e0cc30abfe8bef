// The tied-embedding cross-entropies and logits (after common.cu: block reductions, ex2).

// ---------------------------------------------------------------- cross-entropy
// Standard: `logits` [N, V] (from a GEMM). One block per row: lse, and the row's loss.

// Logits rows are `ld` apart (v rounded up, so that every row starts 16-byte aligned and cuBLAS
// can write them with tensor-core kernels); columns v..ld are never touched. One pass: each
// thread keeps a running max and a sum rescaled to it, and the block combines them.
// A thread's running max m and sum s of exp(x − m) over the x it has seen.
__device__ __forceinline__ void online_add(float x, float& m, float& s) {
    if (x > m) { s *= expf(m - x); m = x; }
    s += expf(x - m);
}

// The block's log-sum-exp from its threads' (m, s).
__device__ float online_lse(float m, float s, float* shared) {
    float mx = block_max(m, shared);
    s = block_sum(m == -INFINITY ? 0.0f : s * expf(m - mx), shared);
    return mx + logf(s);
}

extern "C" __global__ void ce_forward_kernel(float* lse, float* loss, const float* logits, const u32* targets, u32 v, u32 ld) {
    __shared__ float shared[32];
    u64 row = blockIdx.x;
    const float* l = logits + row * ld;
    float m = -INFINITY, s = 0.0f;
    for (u32 i = threadIdx.x; i < v; i += blockDim.x) online_add(l[i], m, s);
    float z = online_lse(m, s, shared);
    if (threadIdx.x == 0) {
        lse[row] = z;
        loss[row] = z - l[targets[row]];
    }
}

// In place: logits → scale·(softmax − onehot(target)).
extern "C" __global__ void ce_backward_kernel(float* logits, const float* lse, const u32* targets, u32 v, u32 ld, float scale) {
    u64 row = blockIdx.x;
    float* l = logits + row * ld;
    float z = lse[row];
    u32 t = targets[row];
    for (u32 i = threadIdx.x; i < v; i += blockDim.x) {
        float p = expf(l[i] - z);
        l[i] = scale * (p - (i == t ? 1.0f : 0.0f));
    }
}

// The bf16 mode's cross-entropy: logits [rows, ld] in bf16 (the GEMM writes them so, half the
// bytes of f32), eight at a time in one 16-byte access (ld is a multiple of 32: logits_stride), the
// softmax in base 2 (one FFMA and one ex2 a logit, the running max once per eight).
__device__ __forceinline__ float bf16_lo(u32 w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(u32 w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ void bf16x8(uint4 q, float* x) {
    u32 w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        x[2 * k] = bf16_lo(w[k]);
        x[2 * k + 1] = bf16_hi(w[k]);
    }
}

extern "C" __global__ void ce_forward_bf16_kernel(float* lse, float* loss, const u32* logits, const u32* targets, u32 v, u32 ld) {
    __shared__ float shared[32];
    u64 row = blockIdx.x;
    const u32* l = logits + row * (ld / 2);
    const uint4* l8 = (const uint4*)l;
    // m and s of the base-2 logits x·log2(e); the padded columns count as −∞.
    float m = -INFINITY, s = 0.0f;
    for (u32 i = threadIdx.x; 8 * i < v; i += blockDim.x) {
        float x[8], cm = -INFINITY;
        bf16x8(l8[i], x);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            x[k] = 8 * i + k < v ? x[k] * LOG2E : -INFINITY;
            cm = fmaxf(cm, x[k]);
        }
        if (cm > m) {
            s *= ex2(m - cm);
            m = cm;
        }
#pragma unroll
        for (int k = 0; k < 8; k++) s += ex2(x[k] - m);
    }
    float mx = block_max(m, shared);
    s = block_sum(m == -INFINITY ? 0.0f : s * ex2(m - mx), shared);
    if (threadIdx.x == 0) {
        float z = (mx + log2f(s)) * LN2;
        u32 t = targets[row];
        u32 w = l[t / 2];
        lse[row] = z;
        loss[row] = z - (t % 2 ? bf16_hi(w) : bf16_lo(w));
    }
}

// In place: bf16 logits → bf16 scale·(softmax − onehot(target)), the padded columns zero.
extern "C" __global__ void ce_backward_bf16_kernel(u32* logits, const float* lse, const u32* targets, u32 v, u32 ld, float scale) {
    u64 row = blockIdx.x;
    uint4* l8 = (uint4*)(logits + row * (ld / 2));
    float z = lse[row] * LOG2E;
    u32 t = targets[row];
    for (u32 i = threadIdx.x; i < ld / 8; i += blockDim.x) {
        float x[8];
        bf16x8(l8[i], x);
        u32 w[4];
#pragma unroll
        for (int k = 0; k < 8; k += 2) {
            u32 c = 8 * i + k;
            float a = c < v ? scale * (ex2(fmaf(x[k], LOG2E, -z)) - (c == t ? 1.0f : 0.0f)) : 0.0f;
            float b = c + 1 < v ? scale * (ex2(fmaf(x[k + 1], LOG2E, -z)) - (c + 1 == t ? 1.0f : 0.0f)) : 0.0f;
            w[k / 2] = (u32)to_bf16(a) | ((u32)to_bf16(b) << 16);
        }
        l8[i] = make_uint4(w[0], w[1], w[2], w[3]);
    }
}

// Hash: s1, s2 [N, B]; ℓ_t = s1[t mod B] + s2[(t / B) mod B] over t < V.
extern "C" __global__ void hash_ce_forward_kernel(float* lse, float* loss, const float* s1, const float* s2, const u32* targets, u32 buckets, u32 v) {
    __shared__ float shared[32];
    u64 row = blockIdx.x;
    const float* a = s1 + row * buckets;
    const float* b = s2 + row * buckets;
    float mx = -INFINITY;
    for (u32 t = threadIdx.x; t < v; t += blockDim.x) mx = fmaxf(mx, a[t % buckets] + b[(t / buckets) % buckets]);
    mx = block_max(mx, shared);
    float s = 0.0f;
    for (u32 t = threadIdx.x; t < v; t += blockDim.x) s += expf(a[t % buckets] + b[(t / buckets) % buckets] - mx);
    s = block_sum(s, shared);
    if (threadIdx.x == 0) {
        float z = mx + logf(s);
        u32 t = targets[row];
        lse[row] = z;
        loss[row] = z - (a[t % buckets] + b[(t / buckets) % buckets]);
    }
}

// ds1[r] = Σ_{t ≡ r} g_t, ds2[q] = Σ_{⌊t/B⌋ ≡ q} g_t, g_t = scale·(p_t − [t = target]); shared
// memory holds the row's 2·B sums (dynamic shared memory of 8·B bytes).
extern "C" __global__ void hash_ce_backward_kernel(float* ds1, float* ds2, const float* s1, const float* s2, const float* lse, const u32* targets, u32 buckets, u32 v, float scale) {
    extern __shared__ float acc[];
    u64 row = blockIdx.x;
    const float* a = s1 + row * buckets;
    const float* b = s2 + row * buckets;
    for (u32 i = threadIdx.x; i < 2 * buckets; i += blockDim.x) acc[i] = 0.0f;
    __syncthreads();
    float z = lse[row];
    u32 target = targets[row];
    for (u32 t = threadIdx.x; t < v; t += blockDim.x) {
        u32 i1 = t % buckets, i2 = (t / buckets) % buckets;
        float g = scale * (expf(a[i1] + b[i2] - z) - (t == target ? 1.0f : 0.0f));
        atomicAdd(&acc[i1], g);
        atomicAdd(&acc[buckets + i2], g);
    }
    __syncthreads();
    for (u32 i = threadIdx.x; i < buckets; i += blockDim.x) {
        ds1[row * buckets + i] = acc[i];
        ds2[row * buckets + i] = acc[buckets + i];
    }
}

// When V ≤ B², t ↦ (t mod B, ⌊t/B⌋) is one-to-one onto a grid of R = ⌈V/B⌉ rows of B (the last
// row `rem` long), and exp(ℓ_t) = exp(s1[i]) · exp(s2[j]) factors: the row's partition function
// is (Σ_{j<R−1} e^{s2[j]}) (Σ_i e^{s1[i]}) + e^{s2[R−1]} Σ_{i<rem} e^{s1[i]}, O(B) instead of
// O(V), and so are the gradients: ds1[i] = Σ_j p_ij, ds2[j] = Σ_i p_ij over the grid.
struct HashSums { float ma, mb, sa, sa_rem, sb, eb_last; };

__device__ HashSums hash_sums(const float* a, const float* b, u32 buckets, u32 rows, u32 rem, float* shared) {
    HashSums h;
    float m = -INFINITY;
    for (u32 i = threadIdx.x; i < buckets; i += blockDim.x) m = fmaxf(m, a[i]);
    h.ma = block_max(m, shared);
    m = -INFINITY;
    for (u32 j = threadIdx.x; j < rows; j += blockDim.x) m = fmaxf(m, b[j]);
    h.mb = block_max(m, shared);
    float sa = 0.0f, sr = 0.0f, sb = 0.0f;
    for (u32 i = threadIdx.x; i < buckets; i += blockDim.x) {
        float e = expf(a[i] - h.ma);
        sa += e;
        if (i < rem) sr += e;
    }
    for (u32 j = threadIdx.x; j + 1 < rows; j += blockDim.x) sb += expf(b[j] - h.mb);
    h.sa = block_sum(sa, shared);
    h.sa_rem = block_sum(sr, shared);
    h.sb = block_sum(sb, shared);
    h.eb_last = expf(b[rows - 1] - h.mb);
    return h;
}

extern "C" __global__ void hash_ce_forward_factored_kernel(float* lse, float* loss, const float* s1, const float* s2, const u32* targets, u32 buckets, u32 v) {
    __shared__ float shared[32];
    u64 row = blockIdx.x;
    const float* a = s1 + row * buckets;
    const float* b = s2 + row * buckets;
    u32 rows = (v + buckets - 1) / buckets, rem = v - (rows - 1) * buckets;
    HashSums h = hash_sums(a, b, buckets, rows, rem, shared);
    if (threadIdx.x == 0) {
        float z = h.ma + h.mb + logf(h.sb * h.sa + h.eb_last * h.sa_rem);
        u32 t = targets[row];
        lse[row] = z;
        loss[row] = z - (a[t % buckets] + b[t / buckets]);
    }
}

extern "C" __global__ void hash_ce_backward_factored_kernel(float* ds1, float* ds2, const float* s1, const float* s2, const float* lse, const u32* targets, u32 buckets, u32 v, float scale) {
    __shared__ float shared[32];
    u64 row = blockIdx.x;
    const float* a = s1 + row * buckets;
    const float* b = s2 + row * buckets;
    u32 rows = (v + buckets - 1) / buckets, rem = v - (rows - 1) * buckets;
    HashSums h = hash_sums(a, b, buckets, rows, rem, shared);
    float k = expf(h.ma + h.mb - lse[row]);
    u32 t = targets[row];
    for (u32 i = threadIdx.x; i < buckets; i += blockDim.x) {
        float p = expf(a[i] - h.ma) * k * (h.sb + (i < rem ? h.eb_last : 0.0f));
        ds1[row * buckets + i] = scale * (p - (i == t % buckets ? 1.0f : 0.0f));
    }
    for (u32 j = threadIdx.x; j < buckets; j += blockDim.x) {
        float p = j < rows ? expf(b[j] - h.mb) * k * (j + 1 < rows ? h.sa : h.sa_rem) : 0.0f;
        ds2[row * buckets + j] = scale * (p - (j == t / buckets ? 1.0f : 0.0f));
    }
}

extern "C" __global__ void hash_logits_kernel(float* out, const float* s1, const float* s2, u64 rows, u32 buckets, u32 v) {
    GRID_STRIDE(i, rows * v) {
        u64 r = i / v; u32 t = i % v;
        out[i] = s1[r * buckets + t % buckets] + s2[r * buckets + (t / buckets) % buckets];
    }
}

