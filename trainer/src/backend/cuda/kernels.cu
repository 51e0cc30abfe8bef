// The CUDA backend's kernels (compiled at run time by NVRTC). f32 throughout; GEMMs are cuBLAS's.
// Each kernel mirrors an op of trainer/src/ops (the CPU reference) and is tested against it.
// Indices are 64-bit where a buffer can exceed 2^31 elements (logits, attention).

typedef unsigned int u32;
typedef unsigned long long u64;
// NVRTC has no <math.h>: the constant the softmaxes start their running maximum from.
#define INFINITY __int_as_float(0x7f800000)

#define GRID_STRIDE(i, n) for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (u64)blockDim.x * gridDim.x)

// ---------------------------------------------------------------- elementwise

extern "C" __global__ void add_kernel(float* out, const float* a, const float* b, u64 n) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

extern "C" __global__ void add_assign_kernel(float* dst, const float* src, u64 n) {
    GRID_STRIDE(i, n) dst[i] += src[i];
}

// ---------------------------------------------------------------- bf16 operands
// The bf16 matmul mode hands cuBLAS bf16 operands (f32 accumulation): its FAST_16BF compute type
// on f32 operands ran at TF32's speed. bf16 is the top half of an f32, rounded to nearest even;
// a NaN stays a NaN (NVRTC has no cuda_bf16.h without the toolkit's include path).
typedef unsigned short u16;
__device__ __forceinline__ u16 to_bf16(float x) {
    u32 b = __float_as_uint(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    return (u16)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

// out[i] = bf16(in[i]) for i < n, 0 for n ≤ i < n_padded (a zero-padded operand).
extern "C" __global__ void to_bf16_kernel(u16* out, const float* in, u64 n, u64 n_padded) {
    GRID_STRIDE(i, n_padded) out[i] = i < n ? to_bf16(in[i]) : (u16)0;
}

// to_bf16_kernel four at a time (16-byte loads, 8-byte stores) where `in` is 16-byte and `out`
// 8-byte aligned: a cast is all memory traffic.
extern "C" __global__ void to_bf16_x4_kernel(u16* out, const float* in, u64 n, u64 n_padded) {
    GRID_STRIDE(j, (n_padded + 3) / 4) {
        u64 e = 4 * j;
        if (e + 4 <= n && e + 4 <= n_padded) {
            float4 x = ((const float4*)in)[j];
            uint2 w;
            w.x = (u32)to_bf16(x.x) | ((u32)to_bf16(x.y) << 16);
            w.y = (u32)to_bf16(x.z) | ((u32)to_bf16(x.w) << 16);
            ((uint2*)out)[j] = w;
        } else {
            for (u64 i = e; i < e + 4 && i < n_padded; i++) out[i] = i < n ? to_bf16(in[i]) : (u16)0;
        }
    }
}

// ---------------------------------------------------------------- base-2 exponentials

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

// 2^x to ~2 ulp (PTX ex2.approx.ftz), 2^−∞ = 0: for softmaxes kept in base 2, one MUFU
// instruction a weight where expf wraps range reduction around the same one.
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// ---------------------------------------------------------------- ternary quantization

// Every ternary tensor of a model at once: blockIdx.y picks tensor t of `ranges` (pairs of
// {start, length} in elements of w; a launch each left most of the GPU idle on the small ones).

// sums[t] += Σ |w| over tensor t (f64), for γ = mean|W|.
extern "C" __global__ void abs_sum_kernel(double* sums, const float* w, const u64* ranges) {
    __shared__ double part[256];
    u64 start = ranges[2 * blockIdx.y], n = ranges[2 * blockIdx.y + 1];
    double acc = 0.0;
    GRID_STRIDE(i, n) acc += fabs((double)w[start + i]);
    part[threadIdx.x] = acc;
    __syncthreads();
    for (u32 s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(&sums[blockIdx.y], part[0]);
}

// eff = γ·clamp(round(w/(γ+1e-8)), −1, 1) over tensor t, γ = (float)(sums[t]/n) rounded like the
// CPU's f32 γ.
extern "C" __global__ void ternary_kernel(float* eff, const float* w, const double* sums, const u64* ranges) {
    u64 start = ranges[2 * blockIdx.y], n = ranges[2 * blockIdx.y + 1];
    float gamma = (float)(sums[blockIdx.y] / (double)n);
    float denom = gamma + 1e-8f;
    GRID_STRIDE(i, n) {
        float q = roundf(w[start + i] / denom);
        q = fminf(fmaxf(q, -1.0f), 1.0f);
        eff[start + i] = gamma * q;
    }
}

// ---------------------------------------------------------------- algebra expansion
// Wfull [A·n, A·m] with Wfull[I·n + r, J·m + c] = Σ_g C[I, J, g] · W[g, r, c]: the algebra's
// block structure as one dense matrix (C: the octonion signs, the H32·diag·H32 coefficients, or
// 1 for dense). The kernels work on W' = diag(β)·Wfull·diag(α), so one GEMM is the whole
// AlgebraLinear y = β ⊙ Wfull(α ⊙ x); β is indexed by row modulo beta_len (head mixing's β is
// per head channel) and a null α means none. fold is expand's transpose: the gradient of W.

// Element idx < a·n·a·m of W' into full and, unless null, Wfull into raw.
__device__ __forceinline__ void expand_at(u64 idx, float* full, float* raw, const float* w, const float* coef, const float* alpha, const float* beta, u32 beta_len, u32 a, u32 n, u32 m) {
    // idx < a·n·a·m fits 32 bits (the launches check it): 32-bit divisions, a fraction of 64-bit ones.
    u32 row = (u32)idx / (a * m), col = (u32)idx % (a * m);
    u32 i = row / n, r = row % n, j = col / m, c = col % m;
    const float* cij = coef + ((u64)i * a + j) * a;
    float acc = 0.0f;
    for (u32 g = 0; g < a; g++) {
        float k = cij[g];
        if (k != 0.0f) acc += k * w[((u64)g * n + r) * m + c];
    }
    if (raw) raw[idx] = acc;
    full[idx] = beta[row % beta_len] * acc * (alpha ? alpha[col] : 1.0f);
}

// full = W'; raw (unless null) = Wfull.
extern "C" __global__ void expand_kernel(float* full, float* raw, const float* w, const float* coef, const float* alpha, const float* beta, u32 beta_len, u32 a, u32 n, u32 m) {
    GRID_STRIDE(idx, (u64)a * n * a * m) expand_at(idx, full, raw, w, coef, alpha, beta, beta_len, a, n, m);
}

// Every weight of a model in one launch (each of 64 launches left the GPU mostly idle for its
// tail): blockIdx.y picks a job of 8 words, {full, raw, w, coef, alpha, beta,
// beta_len | a << 32, n | m << 32}.
extern "C" __global__ void expand_many_kernel(const u64* jobs) {
    const u64* j = jobs + 8 * (u64)blockIdx.y;
    u32 beta_len = (u32)j[6], a = (u32)(j[6] >> 32), n = (u32)j[7], m = (u32)(j[7] >> 32);
    GRID_STRIDE(idx, (u64)a * n * a * m)
        expand_at(idx, (float*)j[0], (float*)j[1], (const float*)j[2], (const float*)j[3], (const float*)j[4], (const float*)j[5], beta_len, a, n, m);
}

// D = dyᵀ·x the gradient of W' (dense and octonion; Hadamard has fold_hadamard_kernel). One block
// per 32 consecutive weight elements, its 8 rows of threads splitting the A² terms by I: a thread
// per element alone left most of the GPU idle (for Hadamard it took half of a training step).
#define FOLD_X 32
#define FOLD_Y 8
extern "C" __global__ void __launch_bounds__(FOLD_X * FOLD_Y) fold_kernel(float* dw, const float* d, const float* coef, const float* alpha, const float* beta, u32 beta_len, u32 a, u32 n, u32 m) {
    __shared__ float part[FOLD_Y][FOLD_X + 1];
    // a·n·m ≤ a·n·a·m fits 32 bits (the launches check it).
    u32 total = a * n * m;
    u32 idx = blockIdx.x * FOLD_X + threadIdx.x;
    float acc = 0.0f;
    if (idx < total) {
        u32 g = idx / (n * m);
        u32 r = (idx / m) % n, c = idx % m;
        for (u32 i = threadIdx.y; i < a; i += FOLD_Y) {
            u32 o = i * n + r;
            const float* row = d + o * ((u64)a * m) + c;
            const float* ci = coef + (u64)i * a * a + g;
            float part_i = 0.0f;
            for (u32 j = 0; j < a; j++) {
                float k = ci[(u64)j * a];
                if (k != 0.0f) part_i += k * row[(u64)j * m] * (alpha ? alpha[(u64)j * m + c] : 1.0f);
            }
            acc += beta[o % beta_len] * part_i;
        }
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && idx < total) {
        float s = 0.0f;
        for (u32 y = 0; y < FOLD_Y; y++) s += part[y][threadIdx.x];
        dw[idx] += s;
    }
}

// The Hadamard algebra (A = 32) through the transform itself: C[I, J, g] = h(I, g)·h(g, J)/32
// with h(x, y) = (−1)^popcount(x AND y), so a block column of Wfull is a length-32 FHT over g of
// h(g, J)·W[g], and the gradient of W[g] a sum over J of FHTs over I. 5·16 butterflies instead
// of 32 (expand) or 1024 (fold) coefficient terms per element, the 32 values in registers.

__device__ __forceinline__ float hsign(u32 x, u32 y) { return (__popc(x & y) & 1) ? -1.0f : 1.0f; }

// v[g] ← Σ_i h(g, i)·v[i] (unnormalised, Sylvester order).
__device__ __forceinline__ void fht32(float* v) {
#pragma unroll
    for (int h = 1; h < 32; h <<= 1)
#pragma unroll
        for (int i = 0; i < 32; i++)
            if ((i & h) == 0) { float a = v[i], b = v[i + h]; v[i] = a + b; v[i + h] = a - b; }
}

// expand_kernel for A = 32: one thread per (r, J, c), c fastest (loads of W and stores of each
// block row coalesced); it writes column J·m + c of all 32 block rows I.
// Element idx < n·32·m of expand_hadamard_kernel's work: one column of one block row.
__device__ __forceinline__ void expand_hadamard_at(u64 idx, float* full, float* raw, const float* w, const float* alpha, const float* beta, u32 beta_len, u32 n, u32 m) {
    // idx < n·32·m fits 32 bits (the launches check the weight's 32n·32m): 32-bit divisions here,
    // and β's row index stepped below, are a fraction of 64-bit ones.
    u32 e = (u32)idx, c = e % m, J = (e / m) % 32, r = e / (32 * m);
    float v[32];
#pragma unroll
    for (int g = 0; g < 32; g++) v[g] = hsign(g, J) * w[((u64)g * n + r) * m + c];
    fht32(v);
    u64 col = (u64)J * m + c;
    float a = alpha ? alpha[col] : 1.0f;
    u32 bi = r % beta_len, step = n % beta_len;
#pragma unroll
    for (int i = 0; i < 32; i++) {
        u64 row = (u64)i * n + r;
        float x = v[i] * (1.0f / 32.0f);
        u64 at = row * (32 * (u64)m) + col;
        if (raw) raw[at] = x;
        full[at] = beta[bi] * x * a;
        bi += step;
        if (bi >= beta_len) bi -= beta_len;
    }
}

extern "C" __global__ void expand_hadamard_kernel(float* full, float* raw, const float* w, const float* alpha, const float* beta, u32 beta_len, u32 n, u32 m) {
    GRID_STRIDE(idx, (u64)n * 32 * m) expand_hadamard_at(idx, full, raw, w, alpha, beta, beta_len, n, m);
}

// Every Hadamard weight of a model in one launch (a single 512 × 512 one is 8,192 threads, too few
// to fill a GPU): blockIdx.y picks a job of 7 words, {full, raw, w, alpha, beta, beta_len | n << 32, m}.
extern "C" __global__ void expand_hadamard_many_kernel(const u64* jobs) {
    const u64* j = jobs + 7 * (u64)blockIdx.y;
    u32 beta_len = (u32)j[5], n = (u32)(j[5] >> 32), m = (u32)j[6];
    GRID_STRIDE(idx, (u64)n * 32 * m)
        expand_hadamard_at(idx, (float*)j[0], (float*)j[1], (const float*)j[2], (const float*)j[3], (const float*)j[4], beta_len, n, m);
}

// fold_kernel for A = 32: a block per (r, c) and its 32 × 32 block M[i, J] = β_i·D[i, J]·α_J of
// rows i·n + r, columns J·m + c (lane J of every warp holds column J). dW[g] = (1/32)·Σ_{i,J}
// h(i, g)·h(g, J)·M[i, J], and because h(g, i)·h(g, J) = h(g, i XOR J) that is (1/32)·FHT(S)[g]
// with S[k] = Σ_i M[i, i XOR k], the "xor diagonals" of M: a warp's rows add to lane k the value
// that lane i XOR k holds (one shuffle a row), the warps' parts meet in shared memory, and a
// length-32 FHT across the lanes (five shuffles) leaves dW[g] in lane g. The same pass over D does
// row_dot's and col_dot's sums (dβ, dα). The FOLD_H_SPLIT warps split the 32 rows so that a
// 512 × 512 weight is 2,048 warps, not 256: one warp per (r, c) left the kernel latency-bound.
#define FOLD_H_SPLIT 8
#define FOLD_H_ROWS (32 / FOLD_H_SPLIT)
extern "C" __global__ void __launch_bounds__(32 * FOLD_H_SPLIT) fold_hadamard_kernel(float* dw, float* dalpha, float* dbeta, const float* d, const float* raw, const float* alpha, const float* beta, u32 beta_len, u32 n, u32 m) {
    __shared__ float sp[FOLD_H_SPLIT][32], dap[FOLD_H_SPLIT][32], rows[32];
    u32 lane = threadIdx.x % 32, w = threadIdx.x / 32;
    u32 r = blockIdx.x / m, c = blockIdx.x % m;
    u64 col = (u64)lane * m + c;
    float a = alpha ? alpha[col] : 1.0f, da = 0.0f, s = 0.0f;
    u32 i0 = w * FOLD_H_ROWS;
    // β's index of row i·n + r, stepped by n modulo beta_len rather than divided for every row.
    u32 bi = (i0 * n + r) % beta_len, step = n % beta_len;
#pragma unroll
    for (u32 k = 0; k < FOLD_H_ROWS; k++) {
        u32 i = i0 + k;
        u64 at = ((u64)i * n + r) * (32 * (u64)m) + col;
        float dv = d[at], wd = raw[at] * dv, b = beta[bi];
        s += __shfl_sync(0xffffffff, b * dv * a, i ^ lane);
        da += b * wd;
        float t = wd * a;
#pragma unroll
        for (u32 h = 16; h >= 1; h >>= 1) t += __shfl_xor_sync(0xffffffff, t, h);
        if (lane == 0) rows[i] = t;
        bi += step;
        if (bi >= beta_len) bi -= beta_len;
    }
    sp[w][lane] = s;
    dap[w][lane] = da;
    __syncthreads();
    if (w == 0) {
        s = 0.0f;
#pragma unroll
        for (u32 v = 0; v < FOLD_H_SPLIT; v++) s += sp[v][lane];
#pragma unroll
        for (u32 h = 1; h < 32; h <<= 1) {
            float o = __shfl_xor_sync(0xffffffff, s, h);
            s = (lane & h) ? o - s : s + o;
        }
        dw[((u64)lane * n + r) * m + c] += s * (1.0f / 32.0f);
    } else if (w == 1) {
        atomicAdd(&dbeta[(lane * n + r) % beta_len], rows[lane]);
    } else if (w == 2 && dalpha) {
        da = 0.0f;
#pragma unroll
        for (u32 v = 0; v < FOLD_H_SPLIT; v++) da += dap[v][lane];
        atomicAdd(&dalpha[col], da);
    }
}

// dbeta[o % beta_len] += Σ_i raw[o, i]·α[i]·d[o, i]: one warp per row o.
extern "C" __global__ void row_dot_kernel(float* dbeta, u32 beta_len, const float* raw, const float* d, const float* alpha, u32 rows, u32 cols) {
    u32 o = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (o >= rows) return;
    float acc = 0.0f;
    for (u32 i = lane; i < cols; i += 32) acc += raw[(u64)o * cols + i] * d[(u64)o * cols + i] * (alpha ? alpha[i] : 1.0f);
    for (int s = 16; s > 0; s >>= 1) acc += __shfl_xor_sync(0xffffffff, acc, s);
    if (lane == 0) atomicAdd(&dbeta[o % beta_len], acc);
}

// dalpha[i] += Σ_o β[o % beta_len]·raw[o, i]·d[o, i]: blocks of 32 columns × rows_per_block rows,
// the block's 8 thread rows summed in shared memory, one atomic per column and block.
extern "C" __global__ void col_dot_kernel(float* dalpha, const float* raw, const float* d, const float* beta, u32 beta_len, u32 rows, u32 cols, u32 rows_per_block) {
    __shared__ float part[8][33];
    u32 i = blockIdx.x * 32 + threadIdx.x;
    u32 o0 = blockIdx.y * rows_per_block;
    u32 o1 = min(o0 + rows_per_block, rows);
    float acc = 0.0f;
    if (i < cols)
        for (u32 o = o0 + threadIdx.y; o < o1; o += 8) acc += beta[o % beta_len] * raw[(u64)o * cols + i] * d[(u64)o * cols + i];
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && i < cols) {
        float s = 0.0f;
        for (u32 y = 0; y < 8; y++) s += part[y][threadIdx.x];
        atomicAdd(&dalpha[i], s);
    }
}

// ---------------------------------------------------------------- embeddings

extern "C" __global__ void embed_kernel(float* out, const u32* tokens, const float* e1, const float* e2, u32 buckets, u64 rows, u32 d) {
    GRID_STRIDE(i, rows * d) {
        u64 r = i / d; u32 c = i % d;
        u32 t = tokens[r];
        if (e2) {
            out[i] = e1[(u64)(t % buckets) * d + c] + e2[(u64)((t / buckets) % buckets) * d + c];
        } else {
            out[i] = e1[(u64)t * d + c];
        }
    }
}

extern "C" __global__ void embed_backward_kernel(float* g1, float* g2, const float* dout, const u32* tokens, u32 buckets, u64 rows, u32 d) {
    GRID_STRIDE(i, rows * d) {
        u64 r = i / d; u32 c = i % d;
        u32 t = tokens[r];
        float g = dout[i];
        if (g2) {
            atomicAdd(&g1[(u64)(t % buckets) * d + c], g);
            atomicAdd(&g2[(u64)((t / buckets) % buckets) * d + c], g);
        } else {
            atomicAdd(&g1[(u64)t * d + c], g);
        }
    }
}

// ---------------------------------------------------------------- block reductions

__device__ float block_sum(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    u32 lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    u32 warps = (blockDim.x + 31) / 32;
    v = threadIdx.x < warps ? shared[threadIdx.x] : 0.0f;
    if (warp == 0) for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    return shared[0];
}

__device__ float block_max(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    u32 lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    u32 warps = (blockDim.x + 31) / 32;
    v = threadIdx.x < warps ? shared[threadIdx.x] : -INFINITY;
    if (warp == 0) for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    return shared[0];
}

// ---------------------------------------------------------------- RMSNorm (one block per row)

extern "C" __global__ void rmsnorm_kernel(float* out, float* rstd, const float* inp, const float* gain, u32 d) {
    __shared__ float shared[32];
    u64 row = blockIdx.x;
    const float* x = inp + row * d;
    float ss = 0.0f;
    for (u32 c = threadIdx.x; c < d; c += blockDim.x) ss += x[c] * x[c];
    ss = block_sum(ss, shared);
    float rs = rsqrtf(ss / d + 1e-6f);
    if (threadIdx.x == 0) rstd[row] = rs;
    for (u32 c = threadIdx.x; c < d; c += blockDim.x) out[row * d + c] = x[c] * rs * gain[c];
}

// dx += rs·(g⊙dy) − rs³/d · x · Σ(g⊙dy⊙x) and dgain[c] += Σ_r dy[r,c] x[r,c] rstd[r], over a
// block of `rows_per_block` rows, a warp a row (no block-wide barrier per row); the gain's partial
// sums stay in (dynamic, d floats of) shared memory, one global atomic per column and block.
// A lane keeps its first NORM_REG·32 columns' x and dy (all of them for d ≤ 512) in registers
// between the dot product and the update, and the pointers are restrict: the update's loads of dx
// can all be in flight at once, where re-reading x and dy behind each store of dx serialised them.
extern "C" __global__ void rmsnorm_backward_kernel(float* __restrict__ dinp, float* __restrict__ dgain, const float* __restrict__ dout, const float* __restrict__ inp, const float* __restrict__ rstd, const float* __restrict__ gain, u64 rows, u32 d, u32 rows_per_block) {
    extern __shared__ float gsum[];
    for (u32 c = threadIdx.x; c < d; c += blockDim.x) gsum[c] = 0.0f;
    __syncthreads();
    u32 lane = threadIdx.x % 32, warps = blockDim.x / 32;
    u64 r0 = (u64)blockIdx.x * rows_per_block;
    u64 r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
    const int NORM_REG = 16;
    // The gain's sums of the lane's register columns; the rest go straight into shared memory.
    float gp[NORM_REG];
#pragma unroll
    for (int j = 0; j < NORM_REG; j++) gp[j] = 0.0f;
    for (u64 row = r0 + threadIdx.x / 32; row < r1; row += warps) {
        const float* x = inp + row * d;
        const float* dy = dout + row * d;
        float* dx = dinp + row * d;
        float rs = rstd[row];
        float dot = 0.0f, xs[NORM_REG], dys[NORM_REG];
#pragma unroll
        for (int j = 0; j < NORM_REG; j++) {
            u32 c = lane + 32 * j;
            xs[j] = c < d ? x[c] : 0.0f;
            dys[j] = c < d ? dy[c] : 0.0f;
            float xy = dys[j] * xs[j];
            if (c < d) dot += xy * gain[c];
            gp[j] += xy * rs;
        }
        for (u32 c = lane + 32 * NORM_REG; c < d; c += 32) {
            float xy = dy[c] * x[c];
            dot += xy * gain[c];
            atomicAdd(&gsum[c], xy * rs);
        }
        for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffff, dot, o);
        float k = rs * rs * rs * dot / d;
#pragma unroll
        for (int j = 0; j < NORM_REG; j++) {
            u32 c = lane + 32 * j;
            if (c < d) dx[c] += rs * gain[c] * dys[j] - k * xs[j];
        }
        for (u32 c = lane + 32 * NORM_REG; c < d; c += 32) dx[c] += rs * gain[c] * dy[c] - k * x[c];
    }
#pragma unroll
    for (int j = 0; j < NORM_REG; j++)
        if (lane + 32 * j < d) atomicAdd(&gsum[lane + 32 * j], gp[j]);
    __syncthreads();
    for (u32 c = threadIdx.x; c < d; c += blockDim.x) atomicAdd(&dgain[c], gsum[c]);
}

// ---------------------------------------------------------------- RoPE

// One thread per (row, head, pair). inverse: rotate by −angle; acc: out += instead of =. Heads are
// contiguous, so pair k of row r is elements 2k and 2k + 1, one float2 (d is even), and pair
// index r·d/2 + k is the float2's index. rows·d/2 < 2^31 (the launch checks it): 32-bit
// divisions, where the 64-bit ones of an earlier version took most of the kernel's time.
extern "C" __global__ void rope_kernel(float* out, const float* inp, const float* cosv, const float* sinv, u32 rows, u32 seq_len, u32 d, u32 hd, int inverse, int acc) {
    u32 half = hd / 2, per_row = d / 2, pairs = rows * per_row;
    for (u32 idx = blockIdx.x * blockDim.x + threadIdx.x; idx < pairs; idx += blockDim.x * gridDim.x) {
        u32 r = idx / per_row, k = idx % per_row;
        u32 i = k % half, p = r % seq_len;
        float2 x = ((const float2*)inp)[idx];
        float c = cosv[p * half + i], s = sinv[p * half + i];
        if (inverse) s = -s;
        float2 y = make_float2(x.x * c - x.y * s, x.x * s + x.y * c);
        float2* o = (float2*)out + idx;
        if (acc) {
            float2 z = *o;
            y.x += z.x;
            y.y += z.y;
        }
        *o = y;
    }
}

// ---------------------------------------------------------------- SwiGLU

extern "C" __global__ void swiglu_kernel(float* out, const float* gate, const float* up, u64 n) {
    GRID_STRIDE(i, n) {
        float a = gate[i];
        float s = 1.0f / (1.0f + expf(-a));
        out[i] = a * s * up[i];
    }
}

// acc: dgate, dup += (else =).
extern "C" __global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate, const float* up, u64 n, int acc) {
    GRID_STRIDE(i, n) {
        float a = gate[i], b = up[i], dy = dout[i];
        float s = 1.0f / (1.0f + expf(-a));
        float dg = dy * b * s * (1.0f + a * (1.0f - s)), du = dy * a * s;
        dgate[i] = acc ? dgate[i] + dg : dg;
        dup[i] = acc ? dup[i] + du : du;
    }
}

// ---------------------------------------------------------------- attention (flash-style)
// q, k, v, out: [B, T, H·hd] row-major. Nothing T×T is stored: the forward saves each row's
// log-sum-exp lse [B·H, T], and the backward recomputes the softmax tile by tile from it.
// One thread per query (forward, dq) or per key (dk, dv), ATT_Q of them per block, all of one
// (b, h); key / query rows pass through shared memory ATT_K at a time, where every thread of the
// block reads the same row (a broadcast). HD is the head dimension rounded up to a compiled size;
// channels c ≥ hd are zero. Each thread's accumulations run in key order, like the CPU's.

#define ATT_Q 64
#define ATT_K 32

// Loads rows r0..r0+ATT_K of head h of x [B, T, d] (zeros past T or hd) into tile[ATT_K][HD].
template <int HD>
__device__ void load_tile(float (*tile)[HD], const float* x, u64 b, u32 r0, u32 seq, u32 d, u32 h, u32 hd) {
    for (u32 i = threadIdx.x; i < ATT_K * HD; i += blockDim.x) {
        u32 r = i / HD, c = i % HD;
        u32 t = r0 + r;
        tile[r][c] = (t < seq && c < hd) ? x[(b * seq + t) * d + (u64)h * hd + c] : 0.0f;
    }
}

template <int HD>
__device__ void load_row(float* dst, const float* x, u64 b, u32 t, u32 d, u32 h, u32 hd, u32 seq, float scale) {
    const float* row = x + (b * seq + t) * d + (u64)h * hd;
#pragma unroll
    for (int c = 0; c < HD; c++) dst[c] = c < (int)hd ? row[c] * scale : 0.0f;
}

template <int HD>
__device__ void flash_forward(float* out, float* lse, const float* q, const float* k, const float* v, u32 seq, u32 nh, u32 hd) {
    __shared__ float ks[ATT_K][HD];
    __shared__ float vs[ATT_K][HD];
    u32 bh = blockIdx.x, h = bh % nh;
    u64 b = bh / nh;
    u32 d = nh * hd;
    u32 t0 = blockIdx.y * ATT_Q, t = t0 + threadIdx.x;
    bool live = t < seq;
    float scale = rsqrtf((float)hd);
    float qr[HD], acc[HD];
    load_row<HD>(qr, q, b, live ? t : 0, d, h, hd, seq, scale);
#pragma unroll
    for (int c = 0; c < HD; c++) acc[c] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    u32 end = min(t0 + ATT_Q, seq);
    for (u32 s0 = 0; s0 < end; s0 += ATT_K) {
        __syncthreads();
        load_tile<HD>(ks, k, b, s0, seq, d, h, hd);
        load_tile<HD>(vs, v, b, s0, seq, d, h, hd);
        __syncthreads();
        u32 n = (live && t >= s0) ? min((u32)ATT_K, t + 1 - s0) : 0;
        for (u32 j = 0; j < n; j++) {
            float sc = 0.0f;
#pragma unroll
            for (int c = 0; c < HD; c++) sc += qr[c] * ks[j][c];
            if (sc > m) {
                float r = expf(m - sc);
                l *= r;
#pragma unroll
                for (int c = 0; c < HD; c++) acc[c] *= r;
                m = sc;
            }
            float p = expf(sc - m);
            l += p;
#pragma unroll
            for (int c = 0; c < HD; c++) acc[c] += p * vs[j][c];
        }
    }
    if (!live) return;
    float inv = 1.0f / l;
    float* o = out + (b * seq + t) * d + (u64)h * hd;
#pragma unroll
    for (int c = 0; c < HD; c++) if (c < (int)hd) o[c] = acc[c] * inv;
    lse[(u64)bh * seq + t] = m + logf(l);
}

// dq[t] += scale · Σ_s p_ts (dO_t·v_s − D_t) k_s, with p_ts = exp(q_t·k_s·scale − lse_t) and
// D_t = dO_t·O_t (= Σ_s p_ts dO_t·v_s); D is also written to `dsum` for the key-side kernel.
template <int HD>
__device__ void flash_backward_q(float* dq, float* dsum, const float* dout, const float* out, const float* q, const float* k, const float* v, const float* lse, u32 seq, u32 nh, u32 hd) {
    __shared__ float ks[ATT_K][HD];
    __shared__ float vs[ATT_K][HD];
    u32 bh = blockIdx.x, h = bh % nh;
    u64 b = bh / nh;
    u32 d = nh * hd;
    u32 t0 = blockIdx.y * ATT_Q, t = t0 + threadIdx.x;
    bool live = t < seq;
    u32 tt = live ? t : 0;
    float scale = rsqrtf((float)hd);
    float qr[HD], dor[HD], dqa[HD];
    load_row<HD>(qr, q, b, tt, d, h, hd, seq, scale);
    load_row<HD>(dor, dout, b, tt, d, h, hd, seq, 1.0f);
    load_row<HD>(dqa, out, b, tt, d, h, hd, seq, 1.0f);
    float D = 0.0f;
#pragma unroll
    for (int c = 0; c < HD; c++) { D += dor[c] * dqa[c]; dqa[c] = 0.0f; }
    float L = lse[(u64)bh * seq + tt];
    if (live) dsum[(u64)bh * seq + t] = D;
    u32 end = min(t0 + ATT_Q, seq);
    for (u32 s0 = 0; s0 < end; s0 += ATT_K) {
        __syncthreads();
        load_tile<HD>(ks, k, b, s0, seq, d, h, hd);
        load_tile<HD>(vs, v, b, s0, seq, d, h, hd);
        __syncthreads();
        u32 n = (live && t >= s0) ? min((u32)ATT_K, t + 1 - s0) : 0;
        for (u32 j = 0; j < n; j++) {
            float sc = 0.0f, dp = 0.0f;
#pragma unroll
            for (int c = 0; c < HD; c++) { sc += qr[c] * ks[j][c]; dp += dor[c] * vs[j][c]; }
            float ds = expf(sc - L) * (dp - D);
#pragma unroll
            for (int c = 0; c < HD; c++) dqa[c] += ds * ks[j][c];
        }
    }
    if (!live) return;
    float* g = dq + (b * seq + t) * d + (u64)h * hd;
#pragma unroll
    for (int c = 0; c < HD; c++) if (c < (int)hd) g[c] += dqa[c] * scale;
}

// dk[s] += scale · Σ_{t≥s} p_ts (dO_t·v_s − D_t) q_t, dv[s] += Σ_{t≥s} p_ts dO_t.
template <int HD>
__device__ void flash_backward_kv(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v, const float* lse, const float* dsum, u32 seq, u32 nh, u32 hd) {
    __shared__ float qs[ATT_K][HD];
    __shared__ float dos[ATT_K][HD];
    __shared__ float ls[ATT_K], Ds[ATT_K];
    u32 bh = blockIdx.x, h = bh % nh;
    u64 b = bh / nh;
    u32 d = nh * hd;
    u32 s0 = blockIdx.y * ATT_Q, s = s0 + threadIdx.x;
    bool live = s < seq;
    u32 ss = live ? s : 0;
    float scale = rsqrtf((float)hd);
    float kr[HD], vr[HD], dka[HD], dva[HD];
    load_row<HD>(kr, k, b, ss, d, h, hd, seq, scale);
    load_row<HD>(vr, v, b, ss, d, h, hd, seq, 1.0f);
#pragma unroll
    for (int c = 0; c < HD; c++) { dka[c] = 0.0f; dva[c] = 0.0f; }
    for (u32 t0 = s0; t0 < seq; t0 += ATT_K) {
        __syncthreads();
        load_tile<HD>(qs, q, b, t0, seq, d, h, hd);
        load_tile<HD>(dos, dout, b, t0, seq, d, h, hd);
        if (threadIdx.x < ATT_K) {
            u32 t = t0 + threadIdx.x;
            ls[threadIdx.x] = t < seq ? lse[(u64)bh * seq + t] : 0.0f;
            Ds[threadIdx.x] = t < seq ? dsum[(u64)bh * seq + t] : 0.0f;
        }
        __syncthreads();
        if (!live) continue;
        u32 n = min((u32)ATT_K, seq - t0);
        u32 j0 = s > t0 ? s - t0 : 0;
        for (u32 j = j0; j < n; j++) {
            float sc = 0.0f, dp = 0.0f;
#pragma unroll
            for (int c = 0; c < HD; c++) { sc += qs[j][c] * kr[c]; dp += dos[j][c] * vr[c]; }
            float p = expf(sc - ls[j]);
            float ds = p * (dp - Ds[j]);
#pragma unroll
            for (int c = 0; c < HD; c++) { dva[c] += p * dos[j][c]; dka[c] += ds * qs[j][c]; }
        }
    }
    if (!live) return;
    float* gk = dk + (b * seq + s) * d + (u64)h * hd;
    float* gv = dv + (b * seq + s) * d + (u64)h * hd;
#pragma unroll
    for (int c = 0; c < HD; c++) if (c < (int)hd) { gk[c] += dka[c] * scale; gv[c] += dva[c]; }
}

#define FLASH_KERNELS(HD) \
extern "C" __global__ void __launch_bounds__(ATT_Q) flash_forward_##HD(float* out, float* lse, const float* q, const float* k, const float* v, u32 seq, u32 nh, u32 hd) { \
    flash_forward<HD>(out, lse, q, k, v, seq, nh, hd); } \
extern "C" __global__ void __launch_bounds__(ATT_Q) flash_backward_q_##HD(float* dq, float* dsum, const float* dout, const float* out, const float* q, const float* k, const float* v, const float* lse, u32 seq, u32 nh, u32 hd) { \
    flash_backward_q<HD>(dq, dsum, dout, out, q, k, v, lse, seq, nh, hd); } \
extern "C" __global__ void __launch_bounds__(ATT_Q) flash_backward_kv_##HD(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v, const float* lse, const float* dsum, u32 seq, u32 nh, u32 hd) { \
    flash_backward_kv<HD>(dk, dv, dout, q, k, v, lse, dsum, seq, nh, hd); }

FLASH_KERNELS(8)
FLASH_KERNELS(16)
FLASH_KERNELS(32)
FLASH_KERNELS(64)
FLASH_KERNELS(128)

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

// ---------------------------------------------------------------- optimizer

extern "C" __global__ void sum_squares_kernel(double* sum, const float* g, u64 n) {
    __shared__ double part[256];
    double acc = 0.0;
    GRID_STRIDE(i, n) { double x = g[i]; acc += x * x; }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (u32 s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(sum, part[0]);
}

extern "C" __global__ void adamw_kernel(float* p, const float* g, float* m, float* v, const unsigned char* decay, u64 n, float scale, float lr, float b1, float b2, float c1, float c2, float eps, float wd) {
    GRID_STRIDE(i, n) {
        float gi = g[i] * scale;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float w = decay[i] ? wd : 0.0f;
        p[i] -= lr * ((mi / c1) / (sqrtf(vi / c2) + eps) + w * p[i]);
    }
}
