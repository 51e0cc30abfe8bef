"""Line-for-line numpy emulation of kernels.cu's fold_hadamard_kernel (a warp per (r, c), lane J,
recursive halving over the lanes) against the plain formulas of the gradients it writes:
dW[g, r, c] = sum_{I,J} h(I,g) h(g,J)/32 * beta[I n + r] D[I n + r, J m + c] alpha[J m + c],
dbeta[o % beta_len] = sum_i raw[o, i] alpha[i] D[o, i], dalpha[i] = sum_o beta[o % beta_len] raw[o, i] D[o, i].
Run: python3 trainer/gpu/emulate_fold_hadamard.py (prints the worst relative error per output)."""
import numpy as np

LANES = np.arange(32)

def h(x, y):
    return np.where(np.vectorize(lambda a: bin(a).count("1") % 2)(np.bitwise_and(x, y)) == 1, -1.0, 1.0)

def halve(v, S):
    # v: [lane, value]; lane L keeps the S values whose index bit S equals its lane bit S and adds
    # its partner's (lane L ^ S) copy of them.
    upper = (LANES & S) != 0
    lo, hi = v[:, :S], v[:, S:2 * S]
    keep = np.where(upper[:, None], hi, lo)
    send = np.where(upper[:, None], lo, hi)
    out = v.copy()
    out[:, :S] = keep + send[LANES ^ S]
    return out

def fht32(v):
    v = v.copy()
    hh = 1
    while hh < 32:
        for i in range(0, 32, 2 * hh):
            for j in range(i, i + hh):
                a, b = v[:, j].copy(), v[:, j + hh].copy()
                v[:, j], v[:, j + hh] = a + b, a - b
        hh *= 2
    return v

def kernel(d, raw, alpha, beta, beta_len, n, m):
    dw = np.zeros((32, n, m)); dalpha = np.zeros(32 * m); dbeta = np.zeros(beta_len)
    for r in range(n):
        for c in range(m):
            col = LANES * m + c
            a = alpha[col] if alpha is not None else np.ones(32)
            rows = np.arange(32)[None, :] * n + r            # [1, i]
            dv = d[rows, col[:, None]]                        # [lane J, i]
            wd = raw[rows, col[:, None]] * dv
            b = beta[rows % beta_len]
            v = b * dv * a[:, None]
            t = wd * a[:, None]
            da = (b * wd).sum(1)
            if alpha is not None:
                np.add.at(dalpha, col, da)
            for S in (16, 8, 4, 2, 1):
                t = halve(t, S)
            np.add.at(dbeta, (LANES * n + r) % beta_len, t[:, 0])
            v = fht32(v)
            v = v * h(np.arange(32)[None, :], LANES[:, None])  # v[g] *= h(g, J)
            for S in (16, 8, 4, 2, 1):
                v = halve(v, S)
            dw[LANES, r, c] += v[:, 0] / 32.0
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
for n, m, linear in [(2, 3, True), (3, 2, False), (1, 1, True), (4, 5, True)]:
    d = rng.normal(size=(32 * n, 32 * m)); raw = rng.normal(size=(32 * n, 32 * m))
    alpha = rng.normal(size=32 * m) if linear else None
    beta_len = 32 * n if linear else n                        # head mixing's beta is per channel
    beta = rng.normal(size=beta_len)
    got = kernel(d, raw, alpha, beta, beta_len, n, m)
    ref = reference(d, raw, alpha, beta, beta_len, n, m)
    # Head mixing has no alpha: the kernel leaves dalpha alone.
    pairs = [("dW", 0), ("dalpha", 1), ("dbeta", 2)] if linear else [("dW", 0), ("dbeta", 2)]
    errs = [(k, np.abs(got[i] - ref[i]).max() / max(np.abs(ref[i]).max(), 1e-12)) for k, i in pairs]
    print(n, m, "linear" if linear else "mixing", " ".join(f"{k} {e:.1e}" for k, e in errs))
    assert all(e < 1e-12 for _, e in errs)
