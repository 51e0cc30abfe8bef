// The AlgebraLinear and head mixing: weights expanded to dense matrices and their gradients
// folded back (after common.cu).

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

