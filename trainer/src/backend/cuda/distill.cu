// Distillation (ops/distill.rs, the CPU reference; after common.cu and cross_entropy.cu: block
// reductions, online_add / online_lse).

// ---------------------------------------------------------------- the teacher's targets
// One warp per row of `logits` [rows, v] (row stride v): k rounds, each the row's largest
// remaining logit (ties: the lower id, as the reference's stable sort), which is then set to −∞
// in place; then the softmax at temperature τ over the k picked values. `q` holds the picked
// values until the softmax replaces them.
extern "C" __global__ void distill_targets_kernel(u32* idx, float* q, float* logits, u64 rows, u32 v, u32 k, float inv_tau) {
    u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    u32 lane = threadIdx.x % 32;
    if (row >= rows) return;
    float* l = logits + row * v;
    u32* ir = idx + row * k;
    float* qr = q + row * k;
    for (u32 r = 0; r < k; r++) {
        float best = -INFINITY;
        u32 at = 0xffffffffu;
        for (u32 i = lane; i < v; i += 32) {
            float x = l[i];
            // Strictly greater: a lane meets its ids in increasing order, so ties keep the lowest.
            if (x > best || at == 0xffffffffu) { best = x; at = i; }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ob = __shfl_xor_sync(0xffffffff, best, o);
            u32 oa = __shfl_xor_sync(0xffffffff, at, o);
            if (ob > best || (ob == best && oa < at)) { best = ob; at = oa; }
        }
        if (lane == 0) {
            ir[r] = at;
            qr[r] = best;
            l[at] = -INFINITY;
        }
        __syncwarp();
    }
    // The first pick is the largest: exp((x − top)/τ) ≤ 1, summed by the warp.
    float top = qr[0];
    float s = 0.0f;
    for (u32 r = lane; r < k; r += 32) s += expf((qr[r] - top) * inv_tau);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
    __syncwarp();
    for (u32 r = lane; r < k; r += 32) qr[r] = expf((qr[r] - top) * inv_tau) / s;
}

// ---------------------------------------------------------------- the student's KL
// One block per row of the student's logits [rows, ld] (f32): lse of ℓ/τ, and the row's
// τ²·Σ_j q_j (ln q_j − (ℓ[idx_j]/τ − lse)).
extern "C" __global__ void distill_forward_kernel(float* lse, float* loss, const float* logits, const u32* idx, const float* q, u32 v, u32 ld, u32 k, float inv_tau, float tau2) {
    __shared__ float shared[32];
    u64 row = blockIdx.x;
    const float* l = logits + row * ld;
    float m = -INFINITY, s = 0.0f;
    for (u32 i = threadIdx.x; i < v; i += blockDim.x) online_add(l[i] * inv_tau, m, s);
    float z = online_lse(m, s, shared);
    float kl = 0.0f;
    for (u32 j = threadIdx.x; j < k; j += blockDim.x) {
        float qj = q[row * k + j];
        if (qj > 0.0f) kl += qj * (logf(qj) - (l[idx[row * k + j]] * inv_tau - z));
    }
    kl = block_sum(kl, shared);
    if (threadIdx.x == 0) {
        lse[row] = z;
        loss[row] = tau2 * kl;
    }
}

// In place: logits → scale·(softmax(ℓ/τ) − q scattered to idx), scale = dloss·τ/N; columns
// v..ld (the padding) → 0, so that they add nothing to dh.
extern "C" __global__ void distill_backward_kernel(float* logits, const float* lse, const u32* idx, const float* q, u32 v, u32 ld, u32 k, float inv_tau, float scale) {
    u64 row = blockIdx.x;
    float* l = logits + row * ld;
    float z = lse[row];
    for (u32 i = threadIdx.x; i < ld; i += blockDim.x) l[i] = i < v ? scale * expf(l[i] * inv_tau - z) : 0.0f;
    __syncthreads();
    // The k ids of a row are distinct: no two threads write one logit.
    for (u32 j = threadIdx.x; j < k; j += blockDim.x) l[idx[row * k + j]] -= scale * q[row * k + j];
}
