# Warp-level emulation of trainer/src/backend/cuda/attention_tc.cu, line for line, in numpy
# (one (b, h), f64, no TF32 rounding): the mma fragment layouts of the PTX ISA (m16n8k8 .tf32),
# the masking, the online softmax and the k-slot renumbering, against plain attention and its
# gradients. Runs without a GPU: `python3 trainer/gpu/emulate_attention_tc.py` (numpy); every
# error printed should be ~1e-15 (T = 1 has zero dq and dk, so its relative error is noise).
# Keep it in step with the kernels.
import numpy as np
L = np.arange(32); G = L // 4; I = L % 4
def mma(c, a, b):
    A = np.zeros((16, 8)); B = np.zeros((8, 8))
    A[G, I] = a[:, 0]; A[G + 8, I] = a[:, 1]; A[G, I + 4] = a[:, 2]; A[G + 8, I + 4] = a[:, 3]
    B[I, G] = b[:, 0]; B[I + 4, G] = b[:, 1]
    C = A @ B
    c[:, 0] += C[G, 2 * I]; c[:, 1] += C[G, 2 * I + 1]; c[:, 2] += C[G + 8, 2 * I]; c[:, 3] += C[G + 8, 2 * I + 1]
def quad(x, f):
    y = x.copy()
    for m in (1, 2): y = f(y, y[L ^ m])
    return y
TC_TILE, TC_ROWS = 32, 64
LOG2E, LN2 = 1.4426950408889634, 0.6931471805599453
np.seterr(over="ignore", invalid="ignore")  # masked weights may overflow before the mask zeroes them
def head_at(x, t, c, seq, hd):
    t = np.asarray(t); c = np.asarray(c)
    ok = (t < seq) & (c < hd)
    return np.where(ok, x[np.minimum(t, seq - 1), np.minimum(c, hd - 1)], 0.0)
def load_a(x, r, seq, hd, HD, scale):
    return [np.stack([head_at(x, r, kc*8+I, seq, hd), head_at(x, r+8, kc*8+I, seq, hd),
                      head_at(x, r, kc*8+I+4, seq, hd), head_at(x, r+8, kc*8+I+4, seq, hd)], 1) * scale
            for kc in range(HD // 8)]
def load_tile(x, r0, seq, hd, HD):
    t = np.zeros((TC_TILE, HD))
    for r in range(TC_TILE):
        for c in range(HD): t[r, c] = head_at(x, r0 + r, c, seq, hd)
    return t
def scores(a, tile, n0, HD):
    s = np.zeros((32, 4))
    for kc in range(HD // 8):
        mma(s, a[kc], np.stack([tile[n0 + G, kc*8+I], tile[n0 + G, kc*8+I+4]], 1))
    return s
def accumulate(acc, p, tile, n0, HD):
    a = np.stack([p[:, 0], p[:, 2], p[:, 1], p[:, 3]], 1)
    for nc in range(HD // 8):
        mma(acc[nc], a, np.stack([tile[n0 + 2*I, nc*8+G], tile[n0 + 2*I + 1, nc*8+G]], 1))
def store(y, acc, r, seq, hd, HD, scale, add):
    for nc in range(HD // 8):
        for e in range(4):
            for l in range(32):
                t = r[l] + (8 if e >= 2 else 0); c = nc*8 + 2*I[l] + (e & 1)
                if t < seq and c < hd:
                    y[t, c] = (y[t, c] if add else 0) + acc[nc][l, e] * scale
def forward(q, k, v, seq, hd, HD):
    out = np.zeros((seq, hd)); lse = np.zeros(seq); scale = hd ** -0.5
    for by in range((seq + 63) // 64):
        end = min(by * TC_ROWS + TC_ROWS, seq)
        for w in range(4):
            q0 = by * TC_ROWS + w * 16; r0 = q0 + G; r1 = r0 + 8
            if q0 >= seq: continue
            qa = load_a(q, r0, seq, hd, HD, scale * LOG2E)           # scores in base 2
            o = [np.zeros((32, 4)) for _ in range(HD // 8)]
            m0 = np.full(32, -np.inf); m1 = m0.copy(); l0 = np.zeros(32); l1 = l0.copy()
            for s0 in range(0, end, TC_TILE):
                ks = load_tile(k, s0, seq, hd, HD); vs = load_tile(v, s0, seq, hd, HD)
                # The whole tile's scores, one max and one rescale, then the weighted sums.
                blocks = [n0 for n0 in range(0, TC_TILE, 8) if s0 + n0 <= q0 + 15]
                diagonal = s0 + TC_TILE - 1 > q0                      # only such tiles are masked
                ss = {}
                for n0 in blocks:
                    s = scores(qa, ks, n0, HD); c = s0 + n0 + 2 * I
                    ss[n0] = s
                    if not diagonal: continue
                    s[c > r0, 0] = -np.inf; s[c + 1 > r0, 1] = -np.inf; s[c > r1, 2] = -np.inf; s[c + 1 > r1, 3] = -np.inf
                t0m = np.full(32, -np.inf); t1m = t0m.copy()
                for s in ss.values():
                    t0m = np.maximum(t0m, np.maximum(s[:, 0], s[:, 1])); t1m = np.maximum(t1m, np.maximum(s[:, 2], s[:, 3]))
                n0m = np.maximum(m0, quad(t0m, np.maximum)); n1m = np.maximum(m1, quad(t1m, np.maximum))
                c0 = np.exp2(m0 - n0m); c1 = np.exp2(m1 - n1m); m0, m1 = n0m, n1m
                l0 = l0 * c0; l1 = l1 * c1
                for nc in range(HD // 8):
                    o[nc][:, 0] *= c0; o[nc][:, 1] *= c0; o[nc][:, 2] *= c1; o[nc][:, 3] *= c1
                for n0, s in ss.items():
                    s[:, 0] = np.exp2(s[:, 0] - m0); s[:, 1] = np.exp2(s[:, 1] - m0); s[:, 2] = np.exp2(s[:, 2] - m1); s[:, 3] = np.exp2(s[:, 3] - m1)
                    l0 = l0 + s[:, 0] + s[:, 1]; l1 = l1 + s[:, 2] + s[:, 3]
                    accumulate(o, s, vs, n0, HD)
            l0 = quad(l0, np.add); l1 = quad(l1, np.add)
            for nc in range(HD // 8):
                o[nc][:, 0] /= l0; o[nc][:, 1] /= l0; o[nc][:, 2] /= l1; o[nc][:, 3] /= l1
            store(out, o, r0, seq, hd, HD, 1.0, False)
            for l in range(32):
                if I[l] == 0:
                    if r0[l] < seq: lse[r0[l]] = (m0[l] + np.log2(l0[l])) * LN2
                    if r1[l] < seq: lse[r1[l]] = (m1[l] + np.log2(l1[l])) * LN2
    return out, lse
def backward_q(dout, out, q, k, v, lse, seq, hd, HD):
    dq = np.zeros((seq, hd)); dsum = np.zeros(seq); scale = hd ** -0.5
    for by in range((seq + 63) // 64):
        end = min(by * TC_ROWS + TC_ROWS, seq)
        for w in range(4):
            q0 = by * TC_ROWS + w * 16; r0 = q0 + G; r1 = r0 + 8
            if q0 >= seq: continue
            qa = load_a(q, r0, seq, hd, HD, scale * LOG2E); da = load_a(dout, r0, seq, hd, HD, 1.0)
            D0 = np.zeros(32); D1 = np.zeros(32)
            for c in range(HD // 4):
                cc = I + 4 * c
                D0 += head_at(dout, r0, cc, seq, hd) * head_at(out, r0, cc, seq, hd)
                D1 += head_at(dout, r1, cc, seq, hd) * head_at(out, r1, cc, seq, hd)
            D0 = quad(D0, np.add); D1 = quad(D1, np.add)
            L0 = np.where(r0 < seq, lse[np.minimum(r0, seq-1)] * LOG2E, 0); L1 = np.where(r1 < seq, lse[np.minimum(r1, seq-1)] * LOG2E, 0)
            for l in range(32):
                if I[l] == 0:
                    if r0[l] < seq: dsum[r0[l]] = D0[l]
                    if r1[l] < seq: dsum[r1[l]] = D1[l]
            acc = [np.zeros((32, 4)) for _ in range(HD // 8)]
            for s0 in range(0, end, TC_TILE):
                ks = load_tile(k, s0, seq, hd, HD); vs = load_tile(v, s0, seq, hd, HD)
                n0 = 0
                while n0 < TC_TILE and s0 + n0 <= q0 + 15:
                    s = scores(qa, ks, n0, HD); dp = scores(da, vs, n0, HD); c = s0 + n0 + 2 * I
                    s[:, 0] = np.exp2(s[:, 0] - L0) * (dp[:, 0] - D0); s[:, 1] = np.exp2(s[:, 1] - L0) * (dp[:, 1] - D0)
                    s[:, 2] = np.exp2(s[:, 2] - L1) * (dp[:, 2] - D1); s[:, 3] = np.exp2(s[:, 3] - L1) * (dp[:, 3] - D1)
                    if s0 + n0 + 7 > q0:                              # the causal mask, where needed
                        s[c > r0, 0] = 0; s[c + 1 > r0, 1] = 0; s[c > r1, 2] = 0; s[c + 1 > r1, 3] = 0
                    accumulate(acc, s, ks, n0, HD)
                    n0 += 8
            store(dq, acc, r0, seq, hd, HD, scale, True)
    return dq, dsum
def backward_kv(dout, q, k, v, lse, dsum, seq, hd, HD):
    dk = np.zeros((seq, hd)); dv = np.zeros((seq, hd)); scale = hd ** -0.5
    for by in range((seq + 63) // 64):
        first = by * TC_ROWS
        for w in range(4):
            k0 = first + w * 16; r0 = k0 + G; r1 = r0 + 8
            if k0 >= seq: continue
            ka = load_a(k, r0, seq, hd, HD, scale * LOG2E); va = load_a(v, r0, seq, hd, HD, 1.0)
            gk = [np.zeros((32, 4)) for _ in range(HD // 8)]; gv = [np.zeros((32, 4)) for _ in range(HD // 8)]
            for t0 in range(first, seq, TC_TILE):
                qs = load_tile(q, t0, seq, hd, HD); dos = load_tile(dout, t0, seq, hd, HD)
                ls = np.array([lse[t0 + j] * LOG2E if t0 + j < seq else 0 for j in range(TC_TILE)])
                Ds = np.array([dsum[t0 + j] if t0 + j < seq else 0 for j in range(TC_TILE)])
                for n0 in range(0, TC_TILE, 8):
                    if t0 + n0 + 7 < k0: continue
                    s = scores(ka, qs, n0, HD); dp = scores(va, dos, n0, HD)
                    j = n0 + 2 * I; t = t0 + j
                    p = np.stack([np.exp2(s[:, 0] - ls[j]), np.exp2(s[:, 1] - ls[j + 1]),
                                  np.exp2(s[:, 2] - ls[j]), np.exp2(s[:, 3] - ls[j + 1])], 1)
                    if t0 + n0 < k0 + 15 or t0 + n0 + 8 > seq:           # the mask, where needed
                        in0 = t < seq; in1 = t + 1 < seq
                        p[~(in0 & (t >= r0)), 0] = 0; p[~(in1 & (t + 1 >= r0)), 1] = 0
                        p[~(in0 & (t >= r1)), 2] = 0; p[~(in1 & (t + 1 >= r1)), 3] = 0
                    s[:, 0] = p[:, 0] * (dp[:, 0] - Ds[j]); s[:, 1] = p[:, 1] * (dp[:, 1] - Ds[j + 1])
                    s[:, 2] = p[:, 2] * (dp[:, 2] - Ds[j]); s[:, 3] = p[:, 3] * (dp[:, 3] - Ds[j + 1])
                    accumulate(gv, p, dos, n0, HD); accumulate(gk, s, qs, n0, HD)
            store(dk, gk, r0, seq, hd, HD, scale, True); store(dv, gv, r0, seq, hd, HD, 1.0, True)
    return dk, dv
def reference(q, k, v, dout):
    seq, hd = q.shape; s = q @ k.T / np.sqrt(hd)
    s[np.triu(np.ones((seq, seq), bool), 1)] = -np.inf
    m = s.max(1, keepdims=True); p = np.exp(s - m); z = p.sum(1, keepdims=True); p /= z
    out = p @ v; lse = (m + np.log(z))[:, 0]
    dp = dout @ v.T; D = (dout * out).sum(1, keepdims=True); ds = p * (dp - D) / np.sqrt(hd)
    return out, lse, ds @ k, ds.T @ q, p.T @ dout
rng = np.random.default_rng(1)
for seq, hd, HD in [(45, 16, 16), (130, 12, 16), (77, 8, 8), (100, 24, 32), (70, 64, 64), (16, 16, 16), (1, 8, 8)]:
    q, k = rng.uniform(-2, 2, (2, seq, hd)); v, dout = rng.uniform(-1, 1, (2, seq, hd))
    out, lse = forward(q, k, v, seq, hd, HD)
    dq, dsum = backward_q(dout, out, q, k, v, lse, seq, hd, HD)
    dk, dv = backward_kv(dout, q, k, v, lse, dsum, seq, hd, HD)
    ro, rl, rdq, rdk, rdv = reference(q, k, v, dout)
    # (relative to the largest reference value; seq 1 has dq = dk = 0 up to rounding)
    err = [np.abs(a - b).max() / max(np.abs(b).max(), 1e-9) for a, b in [(out, ro), (lse, rl), (dq, rdq), (dk, rdk), (dv, rdv)]]
    print(seq, hd, HD, " ".join(f"{e:.1e}" for e in err))
