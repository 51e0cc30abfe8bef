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

// out[r, c] = a[r, c] * v[c] (v of length cols)
extern "C" __global__ void scale_cols_kernel(float* out, const float* a, const float* v, u64 rows, u32 cols) {
    GRID_STRIDE(i, rows * cols) out[i] = a[i] * v[i % cols];
}

// out[r, c] += a[r, c] * v[c]
extern "C" __global__ void scale_cols_acc_kernel(float* out, const float* a, const float* v, u64 rows, u32 cols) {
    GRID_STRIDE(i, rows * cols) out[i] += a[i] * v[i % cols];
}

// dst[c % dst_len] += Σ_r a[r, c] * (b ? b[r, c] : 1). Rows are split over blockIdx.y chunks; one
// atomic per (column, chunk).
extern "C" __global__ void colsum_kernel(float* dst, u32 dst_len, const float* a, const float* b, u64 rows, u32 cols, u64 rows_per_chunk) {
    u32 c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    u64 r0 = (u64)blockIdx.y * rows_per_chunk;
    u64 r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    float acc = 0.0f;
    for (u64 r = r0; r < r1; r++) {
        float x = a[r * cols + c];
        acc += b ? x * b[r * cols + c] : x;
    }
    atomicAdd(&dst[c % dst_len], acc);
}

// ---------------------------------------------------------------- ternary quantization

// sum[0] += Σ |w| (f64), for γ = mean|W|.
extern "C" __global__ void abs_sum_kernel(double* sum, const float* w, u64 n) {
    __shared__ double part[256];
    double acc = 0.0;
    GRID_STRIDE(i, n) acc += fabs((double)w[i]);
    part[threadIdx.x] = acc;
    __syncthreads();
    for (u32 s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(sum, part[0]);
}

// eff = γ·clamp(round(w/(γ+1e-8)), −1, 1) with γ = (float)(sum/n), rounded like the CPU's f32 γ.
extern "C" __global__ void ternary_kernel(float* eff, const float* w, const double* sum, u64 n) {
    float gamma = (float)(*sum / (double)n);
    float denom = gamma + 1e-8f;
    GRID_STRIDE(i, n) {
        float q = roundf(w[i] / denom);
        q = fminf(fmaxf(q, -1.0f), 1.0f);
        eff[i] = gamma * q;
    }
}

// ---------------------------------------------------------------- algebra expansion
// W_full [A·n, A·m] with W_full[i·n + r, j·m + c] = Σ_g C[i, j, g] · W[g, r, c]: the algebra's
// block structure as one dense matrix (C: the octonion signs, the H32·diag·H32 coefficients, or
// 1 for dense), so every AlgebraLinear is one GEMM. fold is its transpose: the gradient of W.

extern "C" __global__ void expand_kernel(float* full, const float* w, const float* coef, u32 a, u32 n, u32 m) {
    u64 total = (u64)a * n * a * m;
    GRID_STRIDE(idx, total) {
        u64 row = idx / ((u64)a * m), col = idx % ((u64)a * m);
        u32 i = row / n, r = row % n, j = col / m, c = col % m;
        const float* cij = coef + ((u64)i * a + j) * a;
        float acc = 0.0f;
        for (u32 g = 0; g < a; g++) {
            float k = cij[g];
            if (k != 0.0f) acc += k * w[((u64)g * n + r) * m + c];
        }
        full[idx] = acc;
    }
}

extern "C" __global__ void fold_kernel(float* dw, const float* dfull, const float* coef, u32 a, u32 n, u32 m) {
    u64 total = (u64)a * n * m;
    GRID_STRIDE(idx, total) {
        u32 g = idx / ((u64)n * m);
        u32 r = (idx / m) % n, c = idx % m;
        float acc = 0.0f;
        for (u32 i = 0; i < a; i++) {
            for (u32 j = 0; j < a; j++) {
                float k = coef[((u64)i * a + j) * a + g];
                if (k != 0.0f) acc += k * dfull[((u64)i * n + r) * ((u64)a * m) + (u64)j * m + c];
            }
        }
        dw[idx] += acc;
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

// dx += rs·(g⊙dy) − rs³/d · x · Σ(g⊙dy⊙x)
extern "C" __global__ void rmsnorm_backward_kernel(float* dinp, const float* dout, const float* inp, const float* rstd, const float* gain, u32 d) {
    __shared__ float shared[32];
    u64 row = blockIdx.x;
    const float* x = inp + row * d;
    const float* dy = dout + row * d;
    float rs = rstd[row];
    float dot = 0.0f;
    for (u32 c = threadIdx.x; c < d; c += blockDim.x) dot += dy[c] * gain[c] * x[c];
    dot = block_sum(dot, shared);
    float k = rs * rs * rs * dot / d;
    for (u32 c = threadIdx.x; c < d; c += blockDim.x) dinp[row * d + c] += rs * gain[c] * dy[c] - k * x[c];
}

// dgain[c] += Σ_r dy[r,c] x[r,c] rstd[r]
extern "C" __global__ void rmsnorm_gain_kernel(float* dgain, const float* dout, const float* inp, const float* rstd, u64 rows, u32 d, u64 rows_per_chunk) {
    u32 c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= d) return;
    u64 r0 = (u64)blockIdx.y * rows_per_chunk;
    u64 r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    float acc = 0.0f;
    for (u64 r = r0; r < r1; r++) acc += dout[r * d + c] * inp[r * d + c] * rstd[r];
    atomicAdd(&dgain[c], acc);
}

// ---------------------------------------------------------------- RoPE

// One thread per (row, head, pair). inverse: rotate by −angle; acc: out += instead of =.
extern "C" __global__ void rope_kernel(float* out, const float* inp, const float* cosv, const float* sinv, u64 rows, u32 seq_len, u32 d, u32 hd, int inverse, int acc) {
    u32 half = hd / 2;
    u64 pairs = rows * (d / 2);
    GRID_STRIDE(idx, pairs) {
        u64 r = idx / (d / 2);
        u32 k = idx % (d / 2);
        u32 i = k % half;
        u32 p = r % seq_len;
        u64 e = r * d + 2 * k;  // heads are contiguous, so pair k of the row is elements 2k, 2k+1
        float a = inp[e], b = inp[e + 1];
        float c = cosv[p * half + i], s = sinv[p * half + i];
        if (inverse) s = -s;
        float ya = a * c - b * s, yb = a * s + b * c;
        if (acc) { out[e] += ya; out[e + 1] += yb; } else { out[e] = ya; out[e + 1] = yb; }
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

extern "C" __global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate, const float* up, u64 n) {
    GRID_STRIDE(i, n) {
        float a = gate[i], b = up[i], dy = dout[i];
        float s = 1.0f / (1.0f + expf(-a));
        dgate[i] += dy * b * s * (1.0f + a * (1.0f - s));
        dup[i] += dy * a * s;
    }
}

// ---------------------------------------------------------------- attention
// q, k, v, out: [B, T, H·hd] row-major; att: [B, H, T, T] softmax rows (zero above the diagonal).
// One thread per (b, h, t): the warp's threads read the same key rows (broadcast).

extern "C" __global__ void attention_kernel(float* out, float* att, const float* q, const float* k, const float* v, u32 batch, u32 seq, u32 nh, u32 hd) {
    u64 total = (u64)batch * nh * seq;
    u32 d = nh * hd;
    float scale = rsqrtf((float)hd);
    GRID_STRIDE(idx, total) {
        u32 t = idx % seq;
        u32 h = (idx / seq) % nh;
        u64 b = idx / ((u64)seq * nh);
        const float* qt = q + (b * seq + t) * d + h * hd;
        float* a = att + ((b * nh + h) * seq + t) * seq;
        float mx = -INFINITY;
        for (u32 s = 0; s <= t; s++) {
            const float* ks = k + (b * seq + s) * d + h * hd;
            float dot = 0.0f;
            for (u32 c = 0; c < hd; c++) dot += qt[c] * ks[c];
            dot *= scale;
            a[s] = dot;
            mx = fmaxf(mx, dot);
        }
        float sum = 0.0f;
        for (u32 s = 0; s <= t; s++) { float e = expf(a[s] - mx); a[s] = e; sum += e; }
        float inv = 1.0f / sum;
        for (u32 s = 0; s <= t; s++) a[s] *= inv;
        for (u32 s = t + 1; s < seq; s++) a[s] = 0.0f;
        float* ot = out + (b * seq + t) * d + h * hd;
        for (u32 c = 0; c < hd; c++) {
            float acc = 0.0f;
            for (u32 s = 0; s <= t; s++) acc += a[s] * v[(b * seq + s) * d + h * hd + c];
            ot[c] = acc;
        }
    }
}

// Query-major half of the backward: dscore[t, s] = att(datt − Σ att·datt) into `dsc`, and dq.
extern "C" __global__ void attention_backward_q_kernel(float* dq, float* dsc, const float* dout, const float* q, const float* k, const float* v, const float* att, u32 batch, u32 seq, u32 nh, u32 hd) {
    u64 total = (u64)batch * nh * seq;
    u32 d = nh * hd;
    float scale = rsqrtf((float)hd);
    GRID_STRIDE(idx, total) {
        u32 t = idx % seq;
        u32 h = (idx / seq) % nh;
        u64 b = idx / ((u64)seq * nh);
        const float* a = att + ((b * nh + h) * seq + t) * seq;
        float* g = dsc + ((b * nh + h) * seq + t) * seq;
        const float* dy = dout + (b * seq + t) * d + h * hd;
        float sum = 0.0f;
        for (u32 s = 0; s <= t; s++) {
            const float* vs = v + (b * seq + s) * d + h * hd;
            float da = 0.0f;
            for (u32 c = 0; c < hd; c++) da += dy[c] * vs[c];
            g[s] = da;
            sum += a[s] * da;
        }
        for (u32 s = 0; s <= t; s++) g[s] = a[s] * (g[s] - sum) * scale;
        for (u32 s = t + 1; s < seq; s++) g[s] = 0.0f;
        float* dqt = dq + (b * seq + t) * d + h * hd;
        for (u32 c = 0; c < hd; c++) {
            float acc = 0.0f;
            for (u32 s = 0; s <= t; s++) acc += g[s] * k[(b * seq + s) * d + h * hd + c];
            dqt[c] += acc;
        }
        (void)q;
    }
}

// Key-major half: dk[s] += Σ_{t≥s} dsc[t, s] q[t], dv[s] += Σ_{t≥s} att[t, s] dy[t].
extern "C" __global__ void attention_backward_kv_kernel(float* dk, float* dv, const float* dsc, const float* dout, const float* q, const float* att, u32 batch, u32 seq, u32 nh, u32 hd) {
    u64 total = (u64)batch * nh * seq;
    u32 d = nh * hd;
    GRID_STRIDE(idx, total) {
        u32 s = idx % seq;
        u32 h = (idx / seq) % nh;
        u64 b = idx / ((u64)seq * nh);
        const float* g = dsc + ((b * nh + h) * seq) * seq + s;
        const float* a = att + ((b * nh + h) * seq) * seq + s;
        float* dks = dk + (b * seq + s) * d + h * hd;
        float* dvs = dv + (b * seq + s) * d + h * hd;
        for (u32 c = 0; c < hd; c++) {
            float ak = 0.0f, av = 0.0f;
            for (u32 t = s; t < seq; t++) {
                u64 row = (b * seq + t) * d + h * hd + c;
                ak += g[(u64)t * seq] * q[row];
                av += a[(u64)t * seq] * dout[row];
            }
            dks[c] += ak;
            dvs[c] += av;
        }
    }
}

// ---------------------------------------------------------------- cross-entropy
// Standard: `logits` [N, V] (from a GEMM). One block per row: lse, and the row's loss.

extern "C" __global__ void ce_forward_kernel(float* lse, float* loss, const float* logits, const u32* targets, u32 v) {
    __shared__ float shared[32];
    u64 row = blockIdx.x;
    const float* l = logits + row * v;
    float mx = -INFINITY;
    for (u32 i = threadIdx.x; i < v; i += blockDim.x) mx = fmaxf(mx, l[i]);
    mx = block_max(mx, shared);
    float s = 0.0f;
    for (u32 i = threadIdx.x; i < v; i += blockDim.x) s += expf(l[i] - mx);
    s = block_sum(s, shared);
    if (threadIdx.x == 0) {
        float z = mx + logf(s);
        lse[row] = z;
        loss[row] = z - l[targets[row]];
    }
}

// In place: logits → scale·(softmax − onehot(target)).
extern "C" __global__ void ce_backward_kernel(float* logits, const float* lse, const u32* targets, u32 v, float scale) {
    u64 row = blockIdx.x;
    float* l = logits + row * v;
    float z = lse[row];
    u32 t = targets[row];
    for (u32 i = threadIdx.x; i < v; i += blockDim.x) {
        float p = expf(l[i] - z);
        l[i] = scale * (p - (i == t ? 1.0f : 0.0f));
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
