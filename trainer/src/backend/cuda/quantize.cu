// Ternary quantization of the latent weights (after common.cu).

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

