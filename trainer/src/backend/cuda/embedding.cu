// The token embedding's lookups (after common.cu).

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

