// Causal attention on CUDA cores (after common.cu); attention_tc.cu has the tensor-core kernels.

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

