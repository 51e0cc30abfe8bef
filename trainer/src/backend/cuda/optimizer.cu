// The optimizer: gradient norm and AdamW (after common.cu).

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
