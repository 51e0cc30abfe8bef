// RMSNorm (after common.cu: block_sum).

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

