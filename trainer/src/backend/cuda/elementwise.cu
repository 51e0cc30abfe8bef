// Elementwise ops: sums of buffers, RoPE, SwiGLU (after common.cu).

// ---------------------------------------------------------------- elementwise

extern "C" __global__ void add_kernel(float* out, const float* a, const float* b, u64 n) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

extern "C" __global__ void add_assign_kernel(float* dst, const float* src, u64 n) {
    GRID_STRIDE(i, n) dst[i] += src[i];
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

