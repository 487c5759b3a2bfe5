"""Slow float64 NumPy reference of the four GNCN museum models (an independent test oracle).

Written straight from ``shared/reference/GNCN.md`` and the legacy-fixture README
(ngc-learn v0.5.0 semantics); it deliberately does not import ``predcode``.
Clarity over speed: the K settling steps are an explicit Python loop.

Conventions (row vectors, a batch is ``(B, n)``, matrices are ``(n_from, n_to)``):

    W1 (d1, D): z1 -> mu0     W2 (d2, d1): z2 -> mu1     W3 (d3, d2): z3 -> mu2
    M2 (d2, D): z2 -> mu0     M3 (d3, d1): z3 -> mu1                    (PDH only)
    E1 (D, d1): e0 -> z1      E2 (d1, d2): e1 -> z2      E3 (d2, d3): e2 -> z3
                                                        (t2_lsigma, PDH; t1 models use W^T)
    Sigma1, Sigma2, Prec1, Prec2 (learned covariance of e1, e2; all but gncn_t1)
    V1, V2, V3 (fixed lateral matrices; t2_lsigma and PDH; the drive subtracts phi(z) @ V)

Dynamics (legacy ``SNode`` Euler step, zeta = 1):

    dz = dz_td + dz_bu * phi'(z)      if use_dfx (t1 models)   else  dz_td + dz_bu
    dz = dz - leak * z + prior(z)                 prior = -lmbda * sign(z) (t1 models only)
    z  = z + beta * dz

with ``dz_bu = e~_{l-1} @ E_l`` (E_l = W_l^T for t1 models) and
``dz_td = -e~_l - phi(z_l) @ V_l``. Within each step: all z (from the previous step's errors),
then all mu, then all e. States and errors start at zero.
"""

from __future__ import annotations

import numpy as np

KINDS = ("gncn_t1", "gncn_t1_sigma", "gncn_t2_lsigma", "gncn_pdh")

_T1 = ("gncn_t1", "gncn_t1_sigma")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def _has_sigma(kind: str) -> bool:
    return kind != "gncn_t1"


def _has_E(kind: str) -> bool:
    return kind in ("gncn_t2_lsigma", "gncn_pdh")


def _has_V(kind: str) -> bool:
    return kind in ("gncn_t2_lsigma", "gncn_pdh")


def _has_M(kind: str) -> bool:
    return kind == "gncn_pdh"


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _relu(a):
    return np.maximum(a, 0.0)


def _d_relu(z):
    # legacy: d_relu = (z >= 0); the derivative at 0 is 1 (needed for t1_sigma to leave z = 0)
    return (z >= 0.0).astype(np.float64)


def _tanh(a):
    return np.tanh(a)


def _d_tanh(z):
    t = np.tanh(z)
    return 1.0 - t * t


def _phi(kind):
    """State activation phi and its derivative."""
    if kind == "gncn_t1":
        return _tanh, _d_tanh
    return _relu, _d_relu


def _g_hidden(kind):
    """Prediction activation g for mu1, mu2 (mu0 always uses sigmoid)."""
    if kind in _T1:
        return lambda a: a
    return _relu


def _f64(d: dict) -> dict:
    return {k: np.asarray(v, dtype=np.float64) for k, v in d.items()}


def learnable_names(kind: str) -> tuple[str, ...]:
    """Names of the arrays the optimizer updates, for ``kind``."""
    _check_kind(kind)
    names = ["W1", "W2", "W3"]
    if _has_M(kind):
        names += ["M2", "M3"]
    if _has_E(kind):
        names += ["E1", "E2", "E3"]
    if _has_sigma(kind):
        names += ["Sigma1", "Sigma2"]
    return tuple(names)


def _predict(kind, p, phi1, phi2, phi3):
    g = _g_hidden(kind)
    a0 = phi1 @ p["W1"]
    a1 = phi2 @ p["W2"]
    if _has_M(kind):
        a0 = a0 + phi2 @ p["M2"]
        a1 = a1 + phi3 @ p["M3"]
    mu0 = _sigmoid(a0)
    mu1 = g(a1)
    mu2 = g(phi3 @ p["W3"])
    return mu0, mu1, mu2


def settle64(
    kind: str, params: dict, x: np.ndarray, *, K: int = 50, beta: float = 0.1, leak: float = 0.001, lmbda: float = 0.01
) -> dict:
    """Settle the latents for K legacy steps from zero states; returns every final quantity.

    ``lmbda`` is used only by the t1 models (the others have no prior).
    """
    _check_kind(kind)
    p = _f64(params)
    x = np.asarray(x, dtype=np.float64)
    B = x.shape[0]
    d1 = p["W1"].shape[0]
    d2 = p["W2"].shape[0]
    d3 = p["W3"].shape[0]
    phi, dphi = _phi(kind)
    t1 = kind in _T1
    use_dfx = t1
    lam = lmbda if t1 else 0.0

    if _has_E(kind):
        E1, E2, E3 = p["E1"], p["E2"], p["E3"]
    else:  # tied feedback
        E1, E2, E3 = p["W1"].T, p["W2"].T, p["W3"].T
    if _has_sigma(kind):
        P1, P2 = p["Prec1"], p["Prec2"]
    else:
        P1, P2 = np.eye(d1), np.eye(d2)

    z1, z2, z3 = np.zeros((B, d1)), np.zeros((B, d2)), np.zeros((B, d3))
    phi1, phi2, phi3 = phi(z1), phi(z2), phi(z3)
    e0 = np.zeros_like(x)
    e1, e2 = np.zeros((B, d1)), np.zeros((B, d2))
    et1, et2 = np.zeros((B, d1)), np.zeros((B, d2))
    mu0 = mu1 = mu2 = None

    def state_step(z, phi_z, td_err, bu, V):
        dz_td = -td_err if td_err is not None else 0.0
        if V is not None:
            dz_td = dz_td - phi_z @ V
        if use_dfx:
            dz = dz_td + bu * dphi(z)
        else:
            dz = dz_td + bu
        prior = -lam * np.sign(z) if lam > 0.0 else 0.0
        dz = dz - z * leak + prior
        return z + dz * beta

    for _ in range(K):
        # 1. states (top first; all read the previous step's errors and own phi(z))
        V1 = p["V1"] if _has_V(kind) else None
        V2 = p["V2"] if _has_V(kind) else None
        V3 = p["V3"] if _has_V(kind) else None
        z3n = state_step(z3, phi3, None, et2 @ E3, V3)
        z2n = state_step(z2, phi2, et2, et1 @ E2, V2)
        z1n = state_step(z1, phi1, et1, e0 @ E1, V1)
        z1, z2, z3 = z1n, z2n, z3n
        phi1, phi2, phi3 = phi(z1), phi(z2), phi(z3)
        # 2. predictions
        mu0, mu1, mu2 = _predict(kind, p, phi1, phi2, phi3)
        # 3. errors (t1 models: target is the raw state z; others: phi(z))
        tgt1, tgt2 = (z1, z2) if t1 else (phi1, phi2)
        e0 = x - mu0
        e1 = tgt1 - mu1
        e2 = tgt2 - mu2
        et1 = e1 @ P1
        et2 = e2 @ P2

    return dict(
        z1=z1,
        z2=z2,
        z3=z3,
        phi1=phi1,
        phi2=phi2,
        phi3=phi3,
        mu0=mu0,
        mu1=mu1,
        mu2=mu2,
        e0=e0,
        e1=e1,
        e2=e2,
        et1=et1,
        et2=et2,
    )


def updates64(kind: str, params: dict, settled: dict) -> dict:
    """Gradients handed to the optimizer (negated Hebbian ascent directions), batch-averaged.

    dW_l = -phi(z_l)^T e~_{l-1} / B; dM2 = -phi2^T e0 / B; dM3 = -phi3^T e~1 / B;
    dE_l = dW_l^T; dSigma_l = -0.5 (e~_l^T e~_l - Prec_l) / B.
    """
    _check_kind(kind)
    p = _f64(params)
    s = _f64(settled)
    B = s["e0"].shape[0]
    out = {
        "W1": -(s["phi1"].T @ s["e0"]) / B,
        "W2": -(s["phi2"].T @ s["et1"]) / B,
        "W3": -(s["phi3"].T @ s["et2"]) / B,
    }
    if _has_M(kind):
        out["M2"] = -(s["phi2"].T @ s["e0"]) / B
        out["M3"] = -(s["phi3"].T @ s["et1"]) / B
    if _has_E(kind):
        out["E1"] = out["W1"].T.copy()
        out["E2"] = out["W2"].T.copy()
        out["E3"] = out["W3"].T.copy()
    if _has_sigma(kind):
        for l in (1, 2):
            et = s[f"et{l}"]
            out[f"Sigma{l}"] = -0.5 * (et.T @ et - p[f"Prec{l}"]) / B
    return out


def compute_precision64(Sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Legacy ``ENode.compute_precision``: returns (cov written back into Sigma, Prec).

    cov = max(1, diag) on the diagonal, Sigma off it, then +0.00025 on every entry;
    R = cholesky(lower triangle of cov) (TF reads the lower triangle only); Prec = (R^{-1})^T.
    """
    S = np.asarray(Sigma, dtype=np.float64)
    I = np.eye(S.shape[0])
    cov = np.maximum(1.0, S) * I + S * (1.0 - I) + 0.00025
    low = np.tril(cov)
    sym = low + np.tril(low, -1).T  # numpy's cholesky also reads only the lower triangle
    R = np.linalg.cholesky(sym)
    Rinv = np.linalg.solve(R, I)
    return cov, Rinv.T


def _col_clip(A: np.ndarray, max_norm: float = 1.0) -> np.ndarray:
    """tf.clip_by_norm(A, max_norm, axes=[0]): each column's L2 norm clipped to <= max_norm."""
    nrm = np.sqrt(np.sum(A * A, axis=0, keepdims=True))
    return A * (max_norm / np.maximum(nrm, max_norm))


def adam_constraints_step64(
    kind: str,
    params: dict,
    grads: dict,
    *,
    lr: float = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-7,
    t: int = 1,
    m: dict | None = None,
    v: dict | None = None,
) -> tuple[dict, dict, dict]:
    """One Keras-style Adam step on every learnable array, then the legacy constraints.

    Returns (new_params, m, v). Prec1/Prec2 are recomputed from the post-Adam Sigma *before*
    the column clip of Sigma (legacy order); V is copied unchanged.
    """
    _check_kind(kind)
    p = _f64(params)
    names = learnable_names(kind)
    m = {} if m is None else _f64(m)
    v = {} if v is None else _f64(v)
    alpha = lr * np.sqrt(1.0 - b2**t) / (1.0 - b1**t)
    new = dict(p)
    new_m, new_v = {}, {}
    for n in names:
        g = np.asarray(grads[n], dtype=np.float64)
        mn = b1 * m.get(n, np.zeros_like(g)) + (1.0 - b1) * g
        vn = b2 * v.get(n, np.zeros_like(g)) + (1.0 - b2) * g * g
        new_m[n], new_v[n] = mn, vn
        new[n] = p[n] - alpha * mn / (np.sqrt(vn) + eps)
    # constraints
    for n in names:
        if n.startswith("Sigma"):
            cov, prec = compute_precision64(new[n])
            new["Prec" + n[5:]] = prec
            new[n] = _col_clip(cov)
        else:
            new[n] = _col_clip(new[n])
    return new, new_m, new_v


def project64(kind: str, params: dict, z_top: np.ndarray) -> np.ndarray:
    """Ancestral projection of a top state down to mu0 (no noise).

    s3 = phi(z_top); s2 = phi(s3 W3); s1 = phi(s2 W2 [+ s3 M3]); mu0 = sigmoid(s1 W1 [+ s2 M2]).
    As in the legacy ``project`` (and the fixtures' ``proj0_x``), phi is applied to the given
    z_top. When z_top is itself a sampled phi(z3) this is GNCN.md's legacy bug (4) for GNCN-t1
    (tanh applied twice); for relu models it is harmless (relu is idempotent). Note also that the
    hidden layers use phi (the state activation), not the prediction activation g.
    """
    _check_kind(kind)
    p = _f64(params)
    phi, _ = _phi(kind)
    s3 = phi(np.asarray(z_top, dtype=np.float64))
    s2 = phi(s3 @ p["W3"])
    a1 = s2 @ p["W2"]
    if _has_M(kind):
        a1 = a1 + s3 @ p["M3"]
    s1 = phi(a1)
    a0 = s1 @ p["W1"]
    if _has_M(kind):
        a0 = a0 + s2 @ p["M2"]
    return _sigmoid(a0)


def tod64(settled: dict) -> float:
    """Total discrepancy per sample: mean over the batch of sum_l sum_units e_l^2 (raw errors)."""
    B = np.asarray(settled["e0"]).shape[0]
    tot = 0.0
    for k in ("e0", "e1", "e2"):
        e = np.asarray(settled[k], dtype=np.float64)
        tot += float(np.sum(e * e))
    return tot / B


def bce64(x: np.ndarray, mu0: np.ndarray) -> float:
    """Bernoulli cross-entropy summed over pixels, averaged over samples (nats per image)."""
    x = np.asarray(x, dtype=np.float64)
    p = np.clip(np.asarray(mu0, dtype=np.float64), 1e-7, 1.0 - 1e-7)
    per = -np.sum(x * np.log(p) + (1.0 - x) * np.log(1.0 - p), axis=1)
    return float(np.mean(per))
