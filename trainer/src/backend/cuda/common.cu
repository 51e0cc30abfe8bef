// What every kernel file of the CUDA backend shares (compiled at run time by NVRTC, as one
// program: mod.rs concatenates this file first, then each op family's own .cu). f32 throughout;
// GEMMs are cuBLAS's. Each kernel mirrors an op of trainer/src/ops (the CPU reference) and is
// tested against it. Indices are 64-bit where a buffer can exceed 2^31 elements (logits,
// attention).

typedef unsigned int u32;
typedef unsigned long long u64;
// NVRTC has no <math.h>: the constant the softmaxes start their running maximum from.
#define INFINITY __int_as_float(0x7f800000)

#define GRID_STRIDE(i, n) for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (u64)blockDim.x * gridDim.x)

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

