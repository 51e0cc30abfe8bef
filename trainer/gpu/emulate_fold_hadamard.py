"""Line-for-line numpy emulation of fold_hadamard_kernel (trainer/src/backend/cuda/linear.cu: a block
per (r, c), its eight warps splitting the 32 rows, lane J holding column J; lane k gathering the xor diagonal
S[k] = sum_i M[i, i ^ k] by one shuffle a row, the warps' parts summed through shared memory, then a
32-point FHT across the lanes by xor shuffles) against the plain formulas of the gradients it writes:
dW[g, r, c] = sum_{I,J} h(I,g) h(g,J)/32 * beta[I n + r] D[I n + r, J m + c] alpha[J m + c],
dbeta[o % beta_len] = sum_i raw[o, i] alpha[i] D[o, i], dalpha[i] = sum_o beta[o % beta_len] raw[o, i] D[o, i].
Run: python3 trainer/gpu/emulate_fold_hadamard.py (prints the worst relative error per output)."""
import numpy as np

LANES = np.arange(32)

def h(x, y):
    return np.where(np.vectorize(lambda a: bin(a).count("1") % 2)(np.bitwise_and(x, y)) == 1, -1.0, 1.0)

def shuffle_fht(s):
    # s: [lane]; the kernel's five shuffle rounds: partner = lane ^ hh, lower lane a + b, upper a - b.
    hh = 1
    while hh < 32:
        o = s[LANES ^ hh]
        s = np.where((LANES & hh) != 0, o - s, s + o)
        hh *= 2
    return s

SPLIT = 8; ROWS = 32 // SPLIT

def kernel(d, raw, alpha, beta, beta_len, n, m):
    dw = np.zeros((32, n, m)); dalpha = np.zeros(32 * m); dbeta = np.zeros(beta_len)
    for r in range(n):
        for c in range(m):
            col = LANES * m + c
            a = alpha[col] if alpha is not None else np.ones(32)
            sp = np.zeros((SPLIT, 32)); dap = np.zeros((SPLIT, 32)); rows = np.zeros(32)
            for w in range(SPLIT):
                i0 = w * ROWS
                s = np.zeros(32); da = np.zeros(32)
                bi, step = (i0 * n + r) % beta_len, n % beta_len   # beta's index, stepped per row
                for k in range(ROWS):
                    i = i0 + k
                    dv = d[i * n + r, col]                          # [lane]
                    wd = raw[i * n + r, col] * dv
                    b = beta[bi]
                    s += (b * dv * a)[i ^ LANES]                    # __shfl_sync(.., i ^ lane)
                    da += b * wd
                    t = wd * a
                    for hh in (16, 8, 4, 2, 1):
                        t = t + t[LANES ^ hh]                       # xor-shuffle reduction
                    rows[i] = t[0]
                    bi += step
                    if bi >= beta_len:
                        bi -= beta_len
                sp[w] = s; dap[w] = da
            # warp 0: S and its FHT; warp 1: dbeta; warp 2: dalpha.
            dw[LANES, r, c] += shuffle_fht(sp.sum(0)) / 32.0
            np.add.at(dbeta, (LANES * n + r) % beta_len, rows)
            if alpha is not None:
                np.add.at(dalpha, col, dap.sum(0))
    return dw, dalpha, dbeta

def reference(d, raw, alpha, beta, beta_len, n, m):
    a = alpha if alpha is not None else np.ones(32 * m)
    bfull = beta[np.arange(32 * n) % beta_len]
    dp = bfull[:, None] * d * a[None, :]
    H = h(np.arange(32)[:, None], np.arange(32)[None, :])
    D4 = dp.reshape(32, n, 32, m)                             # [I, r, J, c]
    dw = np.einsum("Ig,gJ,IrJc->grc", H, H, D4) / 32.0
    dbeta = np.zeros(beta_len)
    np.add.at(dbeta, np.arange(32 * n) % beta_len, (raw * d * a[None, :]).sum(1))
    dalpha = (bfull[:, None] * raw * d).sum(0)
    return dw, dalpha, dbeta

rng = np.random.default_rng(3)
# beta_len: 32 n for a linear; head mixing's beta is per head channel (any length; 3 and 5 make the
# stepped index wrap at other places than n does).
for n, m, linear, beta_len in [(2, 3, True, 64), (3, 2, False, 3), (1, 1, True, 32), (4, 5, True, 128),
                               (4, 2, False, 3), (3, 3, False, 5)]:
    d = rng.normal(size=(32 * n, 32 * m)); raw = rng.normal(size=(32 * n, 32 * m))
    alpha = rng.normal(size=32 * m) if linear else None
    beta = rng.normal(size=beta_len)
    got = kernel(d, raw, alpha, beta, beta_len, n, m)
    ref = reference(d, raw, alpha, beta, beta_len, n, m)
    # Head mixing has no alpha: the kernel leaves dalpha alone.
    pairs = [("dW", 0), ("dalpha", 1), ("dbeta", 2)] if linear else [("dW", 0), ("dbeta", 2)]
    errs = [(k, np.abs(got[i] - ref[i]).max() / max(np.abs(ref[i]).max(), 1e-12)) for k, i in pairs]
    print(n, m, "linear" if linear else "mixing", " ".join(f"{k} {e:.1e}" for k, e in errs))
    assert all(e < 1e-12 for _, e in errs)
