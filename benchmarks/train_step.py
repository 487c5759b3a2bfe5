"""Throughput of one GNCN training step against the machine's matrix-multiply peak.

Times ``trainer.step`` (settle for K steps + Hebbian/covariance updates + legacy Adam + constraints)
of a GNCN museum model, and in the same process:

* the float32 matmul peak of the machine (jitted ``jnp.dot`` of large square matrices, and of the
  shapes that occur in the step);
* a "plain JAX" baseline: a minimal hand-written ``jax`` implementation of the same GNCN-PDH step
  (same matmuls, ``lax.scan`` over the K-1 moving steps), and a variant of it with the matmuls that
  share an output (or an operand) concatenated into one larger matmul.

FLOPs are counted analytically as ``2 m n k`` for every matrix product the step executes;
elementwise work (activations, errors, Euler updates, Adam, norms) is ignored. The count is
cross-checked against a walk of the step's jaxpr (every ``dot_general``, scan bodies multiplied by
their length) and against XLA's ``cost_analysis()`` (which counts elementwise ops too).

    .venv/bin/python benchmarks/train_step.py --json results/train_step.json

See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

from predcode.experiments.provenance import git_commit
from predcode.learning.step import make_trainer
from predcode.models.gncn import GNCN, MUSEUM, GNCNConfig

KINDS = tuple(MUSEUM)


# ---------------------------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
    except OSError:
        pass
    return []


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _loadavg() -> list[float] | None:
    try:
        return [float(v) for v in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def _cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall, busy CPU seconds of the whole machine from /proc/stat, CPU seconds of this process)."""
    try:
        with open("/proc/stat") as fh:
            f = [int(v) for v in fh.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        busy = (sum(f[:8]) - f[3] - f[4]) / hz  # all but idle and iowait
        t = os.times()
        return time.perf_counter(), busy, t.user + t.system
    except (OSError, ValueError, IndexError):
        return None


def foreign_load(start, end) -> float | None:
    """Average number of cores other processes kept busy between two snapshots."""
    if start is None or end is None:
        return None
    wall = end[0] - start[0]
    return max(0.0, ((end[1] - start[1]) - (end[2] - start[2])) / wall) if wall > 0 else None


# Other people's processes share this machine's cores. Before each timed sample we wait (within a
# budget) until they leave the machine idle, measure how many cores they used *during* the sample,
# and summarise over the clean samples (see ``summarise``).
QUIET = {"threshold": 0.15, "max_wait": 30.0, "budget": 600.0, "waited": 0.0, "enabled": True}


def wait_quiet() -> None:
    """Wait until other processes keep < ``threshold`` cores busy over a 0.5 s window
    (at most ``max_wait`` s at a time and ``budget`` s over the whole run)."""
    if not QUIET["enabled"]:
        return
    t0 = time.perf_counter()
    while QUIET["waited"] + (time.perf_counter() - t0) < QUIET["budget"]:
        s0 = _cpu_snapshot()
        time.sleep(0.5)
        load = foreign_load(s0, _cpu_snapshot())
        if load is None or load < QUIET["threshold"] or time.perf_counter() - t0 > QUIET["max_wait"]:
            break
    QUIET["waited"] += time.perf_counter() - t0


def timed(fn: Callable[[], Any]) -> tuple[float, float | None, Any]:
    """Run ``fn`` once after ``wait_quiet``: (seconds, cores other processes used meanwhile, result)."""
    wait_quiet()
    s0 = _cpu_snapshot()
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    dt = time.perf_counter() - t0
    return dt, foreign_load(s0, _cpu_snapshot()), out


def summarise(times: list[float], foreign: list[float | None]) -> dict[str, Any]:
    """Median over the clean samples (others used < threshold cores) when at least half are clean,
    else over all samples (flagged)."""
    clean = [t for t, f in zip(times, foreign) if f is not None and f < QUIET["threshold"]]
    use = clean if 2 * len(clean) >= len(times) else times
    return {
        "median_s": float(np.median(use)),
        "min_s": float(np.min(times)),
        "times_s": times,
        "foreign_cores": foreign,
        "n_clean": len(clean),
        "used_clean_only": use is clean,
    }


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "niceness": os.nice(0) if hasattr(os, "nice") else None,
        "autogroup": _read("/proc/self/autogroup"),
        "commit": git_commit(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable), *sys.argv]),
    }


def _jaxlib_version() -> str | None:
    try:
        import jaxlib

        return jaxlib.__version__
    except Exception:  # pragma: no cover
        return None


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# FLOP counts
# ---------------------------------------------------------------------------------------------
def analytic_flops(config: GNCNConfig, batch: int) -> dict[str, float]:
    """``2 m n k`` of every matrix product of one training step, by phase (mirrors gncn.py).

    * settle: one prediction pass at the zero initial states, then K-1 scan steps of drive +
      prediction pass (settle.py);
    * updates: ``calc_updates`` (Hebbian ``phi(z)^T e~`` for W and M, ``e~^T e~`` for Sigma);
    * linalg: the two Cholesky factorisations (n^3/3) and triangular inverses (n^3) of
      ``legacy_precision`` in ``apply_constraints`` (not matmuls; reported apart, not in the total
      unless noted).
    Elementwise work is ignored.
    """
    c, f = config, config.flags
    d, B, L = config.dims(), batch, config.L
    mm = lambda m, k, n: 2.0 * m * k * n

    predict = 0.0
    for l in range(L):  # layer l prediction from l+1 (and l+2 with skip)
        predict += mm(B, d[l + 1], d[l])
        if f["skip"] and l + 2 <= L:
            predict += mm(B, d[l + 2], d[l])
        if l >= 1 and f["learn_sigma"]:
            predict += mm(B, d[l], d[l])  # whitening e_l P_l
    drive = 0.0
    for l in range(1, L + 1):
        drive += mm(B, d[l - 1], d[l])  # e~_{l-1} E_l (or W_l^T)
        if f["lateral"]:
            drive += mm(B, d[l], d[l])  # phi(z_l) V_l
    updates = 0.0
    for l in range(1, L + 1):
        updates += mm(d[l], B, d[l - 1])  # W_l
        if f["skip"] and l >= 2:
            updates += mm(d[l], B, d[l - 2])  # M_l
        if f["learn_sigma"] and l < L:
            updates += mm(d[l], B, d[l])  # e~^T e~ (legacy) or e^T e (nll)
            if c.sigma_rule == "nll":
                updates += 2 * mm(d[l], d[l], d[l])  # inv^T S^T inv^T (inverse itself not counted)
    linalg = 0.0
    if f["learn_sigma"]:
        for l in range(1, L):
            n = d[l]
            linalg += n**3 / 3 + n**3  # cholesky + triangular solve against I
    settle = predict + (c.K - 1) * (drive + predict)
    return {
        "predict_pass": predict,
        "drive_pass": drive,
        "settle": settle,
        "updates": updates,
        "matmul_total": settle + updates,
        "linalg_constraints": linalg,
    }


def _subjaxprs(params: dict) -> list:
    out = []
    for v in params.values():
        for item in v if isinstance(v, (tuple, list)) else (v,):
            if isinstance(item, jex_core.ClosedJaxpr):
                out.append(item.jaxpr)
            elif isinstance(item, jex_core.Jaxpr):
                out.append(item)
    return out


def jaxpr_flops(jaxpr) -> dict[str, float]:
    """Walk a jaxpr: ``dot_general`` FLOPs (scan bodies x length) and Cholesky/triangular-solve FLOPs."""
    tot = {"dot": 0.0, "linalg": 0.0, "n_dot": 0, "while_loops": 0}

    def walk(jx, mult: float) -> None:
        for eqn in jx.eqns:
            name = eqn.primitive.name
            if name == "dot_general":
                (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
                ls, rs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
                batch = np.prod([ls[i] for i in lb], dtype=float)
                contract = np.prod([ls[i] for i in lc], dtype=float)
                lfree = np.prod([s for i, s in enumerate(ls) if i not in lc and i not in lb], dtype=float)
                rfree = np.prod([s for i, s in enumerate(rs) if i not in rc and i not in rb], dtype=float)
                tot["dot"] += mult * 2 * batch * contract * lfree * rfree
                tot["n_dot"] += mult
            elif name == "cholesky":
                n = eqn.invars[0].aval.shape[-1]
                tot["linalg"] += mult * n**3 / 3
            elif name == "triangular_solve":
                a, b = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
                tot["linalg"] += mult * a[-1] ** 2 * (b[-1] if eqn.params.get("left_side") else b[-2])
            sub_mult = mult
            if name == "scan":
                sub_mult = mult * eqn.params["length"]
            elif name == "while":
                tot["while_loops"] += 1  # trip count unknown: body counted once
            subs = _subjaxprs(eqn.params)
            if name == "cond":  # count the most expensive branch only
                best = None
                for s in subs:
                    sub = {"dot": 0.0, "linalg": 0.0, "n_dot": 0, "while_loops": 0}
                    saved = dict(tot)
                    tot.update(sub)
                    walk(s, sub_mult)
                    cand = dict(tot)
                    tot.update(saved)
                    if best is None or cand["dot"] > best["dot"]:
                        best = cand
                if best:
                    for k in tot:
                        tot[k] += best[k]
                continue
            for s in subs:
                walk(s, sub_mult)

    walk(jaxpr.jaxpr if hasattr(jaxpr, "jaxpr") else jaxpr, 1.0)
    return tot


def xla_cost_flops(jitted, *args) -> float | None:
    try:
        ca = jitted.lower(*args).compile().cost_analysis()
    except Exception:  # pragma: no cover - backend without cost analysis
        return None
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else None
    if not ca:
        return None
    return float(ca.get("flops", float("nan")))


# ---------------------------------------------------------------------------------------------
# Matmul peak
# ---------------------------------------------------------------------------------------------
def matmul_rate(
    m: int, k: int, n: int, *, transpose_a: bool = False, warmup: int = 2, repeats: int = 7, min_time: float = 0.2
) -> dict[str, float]:
    """GFLOP/s of a jitted float32 ``(m,k)@(k,n)``; each repeat loops enough calls to last ``min_time``.
    With ``transpose_a`` the left operand is stored (k, m) and used as ``a.T`` (the Hebbian form)."""
    ka, kb = jax.random.split(jax.random.key(1))
    a = jax.random.normal(ka, (k, m) if transpose_a else (m, k), jnp.float32)
    b = jax.random.normal(kb, (k, n), jnp.float32)
    f = jax.jit((lambda a, b: a.T @ b) if transpose_a else (lambda a, b: a @ b))
    jax.block_until_ready(f(a, b))
    t0 = time.perf_counter()
    jax.block_until_ready(f(a, b))
    one = max(time.perf_counter() - t0, 1e-6)
    inner = max(1, int(min_time / one))
    for _ in range(warmup):
        jax.block_until_ready(f(a, b))
    per_call, foreign = [], []
    for _ in range(repeats):

        def loop():
            for _ in range(inner):
                out = f(a, b)
            return out

        dt, fl, _ = timed(loop)
        per_call.append(dt / inner)
        foreign.append(fl)
    summ = summarise(per_call, foreign)
    flops = 2.0 * m * k * n
    return {
        "m": m,
        "k": k,
        "n": n,
        "transpose_a": transpose_a,
        "median_s": summ["median_s"],
        "gflops": flops / summ["median_s"] / 1e9,
        "best_gflops": flops / summ["min_s"] / 1e9,
        "n_clean": summ["n_clean"],
        "repeats": repeats,
        "foreign_cores_busy": max((v for v in foreign if v is not None), default=None),
        "per_call_s": per_call,
        "foreign_cores": foreign,
    }


def step_shapes(config: GNCNConfig, batch: int) -> list[tuple[tuple[int, int, int, bool], float]]:
    """Distinct matmul shapes of one step and how many FLOPs each contributes (for a weighted peak)."""
    c, f = config, config.flags
    d, B, L = config.dims(), batch, config.L
    weight: dict[tuple[int, int, int, bool], float] = {}

    def add(shape, count):
        m, k, n, _ = shape
        weight[shape] = weight.get(shape, 0.0) + count * 2.0 * m * k * n

    passes_pred, passes_drive = c.K, c.K - 1
    for l in range(L):
        add((B, d[l + 1], d[l], False), passes_pred)
        if f["skip"] and l + 2 <= L:
            add((B, d[l + 2], d[l], False), passes_pred)
        if l >= 1 and f["learn_sigma"]:
            add((B, d[l], d[l], False), passes_pred)
    for l in range(1, L + 1):
        add((B, d[l - 1], d[l], False), passes_drive)
        if f["lateral"]:
            add((B, d[l], d[l], False), passes_drive)
    for l in range(1, L + 1):
        add((d[l], B, d[l - 1], True), 1)
        if f["skip"] and l >= 2:
            add((d[l], B, d[l - 2], True), 1)
        if f["learn_sigma"] and l < L:
            add((d[l], B, d[l], True), 1)
    return sorted(weight.items(), key=lambda kv: -kv[1])


# ---------------------------------------------------------------------------------------------
# Plain-JAX GNCN-PDH step (the baseline)
# ---------------------------------------------------------------------------------------------
def make_plain_pdh_step(config: GNCNConfig, *, fused: bool) -> Callable:
    """A minimal hand-written GNCN-PDH training step on the same ``params`` dict as predcode.

    Same arithmetic as predcode (legacy order, relu/sigmoid, whitened errors, lateral V, leak,
    legacy Sigma rule, Keras Adam, column-norm clip, legacy precision). ``fused=True`` concatenates
    the matmuls that are summed into one output (``[phi(z1), phi(z2)] @ [W1; M2]``,
    ``[e~0, phi(z1)] @ [E1; -V1]`` ...) and the Hebbian products that share an operand
    (``[phi(z1), phi(z2)]^T (e~0 w)`` ...): the same FLOPs in fewer, larger matmuls.
    """
    assert config.kind == "gncn_pdh" and config.L == 3, "the plain baseline is written for 3-layer PDH"
    K, beta, leak = config.K, config.beta, config.leak
    relu, sigmoid = jax.nn.relu, jax.nn.sigmoid
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-7
    learn = ("W1", "W2", "W3", "M2", "M3", "E1", "E2", "E3", "Sigma1", "Sigma2")

    def precision(sigma):
        n = sigma.shape[0]
        eye = jnp.eye(n, dtype=sigma.dtype)
        cov = jnp.maximum(1.0, sigma) * eye + sigma * (1 - eye) + 0.00025
        chol = jnp.linalg.cholesky(cov, symmetrize_input=False)
        return cov, jax.scipy.linalg.solve_triangular(chol, eye, lower=True).T

    def clip(w):
        return w * (1.0 / jnp.maximum(jnp.sqrt(jnp.sum(w * w, axis=0, keepdims=True)), 1.0))

    def step(p, opt, x, w):
        count, mu_s, nu_s = opt
        W1, W2, W3, M2, M3 = p["W1"], p["W2"], p["W3"], p["M2"], p["M3"]
        E1, E2, E3, V1, V2, V3 = p["E1"], p["E2"], p["E3"], p["V1"], p["V2"], p["V3"]
        P1, P2 = p["Prec1"], p["Prec2"]
        B = x.shape[0]
        if fused:  # loop-invariant weight concatenations, done once per step
            WM0, WM1 = jnp.concatenate([W1, M2]), jnp.concatenate([W2, M3])
            EV1, EV2, EV3 = (jnp.concatenate([E1, -V1]), jnp.concatenate([E2, -V2]), jnp.concatenate([E3, -V3]))

        def predict(z1, z2, z3):
            f1, f2, f3 = relu(z1), relu(z2), relu(z3)
            if fused:
                mu0 = sigmoid(jnp.concatenate([f1, f2], 1) @ WM0)
                mu1 = relu(jnp.concatenate([f2, f3], 1) @ WM1)
            else:
                mu0 = sigmoid(f1 @ W1 + f2 @ M2)
                mu1 = relu(f2 @ W2 + f3 @ M3)
            mu2 = relu(f3 @ W3)
            e0, e1, e2 = x - mu0, f1 - mu1, f2 - mu2
            return mu0, (e0, e1, e2), (e0, e1 @ P1, e2 @ P2)

        def energy(errs):
            per = sum(jnp.sum(e * e, axis=-1) for e in errs)
            return jnp.sum(per * w) / jnp.sum(w)

        def body(carry, _):
            (z1, z2, z3), _, _, (s0, s1, s2) = carry
            if fused:
                d1 = jnp.concatenate([s0, relu(z1)], 1) @ EV1 - s1
                d2 = jnp.concatenate([s1, relu(z2)], 1) @ EV2 - s2
                d3 = jnp.concatenate([s2, relu(z3)], 1) @ EV3
            else:
                d1 = s0 @ E1 - s1 - relu(z1) @ V1
                d2 = s1 @ E2 - s2 - relu(z2) @ V2
                d3 = s2 @ E3 - relu(z3) @ V3
            z1 = z1 + beta * (d1 - leak * z1)
            z2 = z2 + beta * (d2 - leak * z2)
            z3 = z3 + beta * (d3 - leak * z3)
            mu0, errs, sigs = predict(z1, z2, z3)
            return ((z1, z2, z3), mu0, errs, sigs), energy(errs)

        zs = tuple(jnp.zeros((B, d), x.dtype) for d in config.z_dims)
        mu0, errs, sigs = predict(*zs)
        first = energy(errs)
        ((z1, z2, z3), mu0, errs, (s0, s1, s2)), trace = jax.lax.scan(body, (zs, mu0, errs, sigs), None, length=K - 1)
        trace = jnp.concatenate([first[None], trace])

        f1, f2, f3 = relu(z1), relu(z2), relu(z3)
        sw = jnp.sum(w)
        ws = w[:, None]
        s0w, s1w, s2w = s0 * ws, s1 * ws, s2 * ws
        g: dict[str, jax.Array] = {}
        if fused:
            a = jnp.concatenate([f1, f2], 1).T @ s0w
            g["W1"], g["M2"] = -a[: f1.shape[1]] / sw, -a[f1.shape[1] :] / sw
            a = jnp.concatenate([f2, f3, s1], 1).T @ s1w
            n2, n3 = f2.shape[1], f3.shape[1]
            g["W2"], g["M3"] = -a[:n2] / sw, -a[n2 : n2 + n3] / sw
            g["Sigma1"] = -0.5 * (a[n2 + n3 :] - P1) / sw
            a = jnp.concatenate([f3, s2], 1).T @ s2w
            g["W3"], g["Sigma2"] = -a[:n3] / sw, -0.5 * (a[n3:] - P2) / sw
        else:
            g["W1"], g["M2"] = -(f1.T @ s0w) / sw, -(f2.T @ s0w) / sw
            g["W2"], g["M3"] = -(f2.T @ s1w) / sw, -(f3.T @ s1w) / sw
            g["W3"] = -(f3.T @ s2w) / sw
            g["Sigma1"] = -0.5 * (s1.T @ s1w - P1) / sw
            g["Sigma2"] = -0.5 * (s2.T @ s2w - P2) / sw
        g["E1"], g["E2"], g["E3"] = g["W1"].T, g["W2"].T, g["W3"].T

        count = count + 1
        t = count.astype(jnp.float32)
        lr_t = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        new_p, new_mu, new_nu = dict(p), {}, {}
        for k in learn:
            m = b1 * mu_s[k] + (1 - b1) * g[k]
            v = b2 * nu_s[k] + (1 - b2) * g[k] * g[k]
            new_mu[k], new_nu[k] = m, v
            new_p[k] = p[k] - lr_t * m / (jnp.sqrt(v) + eps)
        for l in (1, 2):
            cov, new_p[f"Prec{l}"] = precision(new_p[f"Sigma{l}"])
            new_p[f"Sigma{l}"] = clip(cov)
        for k in ("W1", "W2", "W3", "M2", "M3", "E1", "E2", "E3"):
            new_p[k] = clip(new_p[k])
        status = jnp.where(jnp.all(jnp.isfinite(trace)), 0, 1).astype(jnp.int32)
        pc = jnp.clip(mu0, 1e-7, 1 - 1e-7)
        bce = jnp.sum(-jnp.sum(x * jnp.log(pc) + (1 - x) * jnp.log(1 - pc), -1) * w) / sw
        return new_p, (count, new_mu, new_nu), (trace[-1], bce, status)

    def init(params):
        z = {k: jnp.zeros_like(params[k]) for k in learn}
        return (jnp.zeros([], jnp.int32), z, dict(z))

    return init, jax.jit(step)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def _fmt_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--kind", choices=KINDS, default="gncn_pdh")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds of each step (median reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls after the compiling call")
    ap.add_argument("--K", type=int, default=None, help="settling steps (default: the config's 50)")
    ap.add_argument(
        "--peak-sizes",
        type=int,
        nargs="+",
        default=[512, 1024, 2048, 3072],
        help="square sizes n for the n x n @ n x n peak",
    )
    ap.add_argument("--peak-repeats", type=int, default=7, help="timed repeats of each matmul shape")
    ap.add_argument("--no-baseline", action="store_true", help="skip the plain-JAX baselines")
    ap.add_argument(
        "--quiet-threshold",
        type=float,
        default=0.15,
        help="a sample is clean if other processes used fewer cores than this meanwhile",
    )
    ap.add_argument(
        "--max-wait",
        type=float,
        default=600.0,
        help="total seconds to spend waiting for other processes to go idle (0: never wait)",
    )
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)

    QUIET.update(threshold=args.quiet_threshold, budget=args.max_wait, enabled=args.max_wait > 0)
    info = machine_info()
    info["loadavg_start"] = _loadavg()
    cfg_kw = {"kind": args.kind} if args.K is None else {"kind": args.kind, "K": args.K}
    config = GNCNConfig(**cfg_kw)
    model = GNCN(config)
    B = args.batch
    print(f"# predcode train-step benchmark  {info['date']}")
    print(f"# command : {info['command']}")
    print(f"# commit  : {info['commit']}   jax {info['jax']} (jaxlib {info['jaxlib']}, {info['backend']})")
    print(
        f"# machine : {info['cpu_model']}, nproc {info['nproc']} (affinity {info['affinity']}), "
        f"python {info['python']}, niceness {info['niceness']} ({info['autogroup']})"
    )
    print(f"# XLA_FLAGS='{info['XLA_FLAGS']}'   load average at start: {info['loadavg_start']}")
    print(f"# model   : {args.kind}, x_dim {config.x_dim}, z_dims {config.z_dims}, K {config.K}, batch {B}")
    print()

    # ---- inputs ----------------------------------------------------------------------------
    params = model.init(jax.random.key(0))
    x = (jax.random.uniform(jax.random.key(2), (B, config.x_dim)) < 0.13).astype(jnp.float32)
    weights = jnp.ones((B,), jnp.float32)
    trainer = make_trainer(model)
    opt_state = trainer.init(params)

    # ---- FLOP counts -----------------------------------------------------------------------
    fl = analytic_flops(config, B)
    jx = jaxpr_flops(jax.make_jaxpr(trainer.step)(params, opt_state, x, weights))
    xla = xla_cost_flops(trainer.step, params, opt_state, x, weights)
    # XLA's HloCostAnalysis counts a while loop's body once, whatever the trip count. Cost one
    # settling step (drive, Euler, predict, energy: the scan body) on its own and add (K - 2) more.
    xla_body = xla_extrap = None
    if xla is not None and config.K > 1:
        from predcode.dynamics.settle import Euler
        from predcode.models.gncn import total_discrepancy

        def one_step(p, x, states, sigs):
            states = Euler(config.beta).step(states, model._drive(p, states, sigs))
            preds, errs, sigs = model._predict(p, x, None, states)
            return states, preds, errs, sigs, total_discrepancy(errs, weights)

        st = tuple(jnp.ones((B, d), jnp.float32) for d in config.z_dims)
        sg = model._predict(params, x, None, st)[2]
        xla_body = xla_cost_flops(jax.jit(one_step), params, x, st, sg)
        if xla_body is not None:
            xla_extrap = xla + (config.K - 2) * xla_body
    step_flops = fl["matmul_total"]
    print("FLOPs of one training step (2mnk per matrix product; elementwise ops ignored)")
    print(
        f"  analytic  : settle {fl['settle'] / 1e9:.3f} G (predict pass {fl['predict_pass'] / 1e6:.1f} M "
        f"x {config.K}, drive pass {fl['drive_pass'] / 1e6:.1f} M x {config.K - 1}) + updates "
        f"{fl['updates'] / 1e9:.3f} G = {step_flops / 1e9:.3f} GFLOP"
        f"   [+ constraint linalg {fl['linalg_constraints'] / 1e6:.1f} MFLOP, not counted]"
    )
    print(
        f"  jaxpr walk: dot_general {jx['dot'] / 1e9:.3f} GFLOP in {int(jx['n_dot'])} dot executions, "
        f"linalg {jx['linalg'] / 1e6:.1f} MFLOP"
        + (f"  (!{jx['while_loops']} while loops counted once)" if jx["while_loops"] else "")
    )
    if xla is not None:
        print(
            f"  XLA cost_analysis(): {xla / 1e9:.3f} GFLOP as reported (all ops incl. elementwise; the "
            f"scan's while-loop body is counted once)"
        )
        if xla_extrap is not None:
            print(
                f"  XLA cost_analysis() + (K-2) x one settling step ({xla_body / 1e6:.1f} M, costed apart): "
                f"{xla_extrap / 1e9:.3f} GFLOP (elementwise included: expect slightly above analytic)"
            )
    else:
        print("  XLA cost_analysis(): not available")
    agree = abs(jx["dot"] - step_flops) / step_flops
    print(f"  analytic vs jaxpr: relative difference {agree:.2e}")
    print()

    # ---- matmul peak ------------------------------------------------------------------------
    print(f"Matmul peak (jitted float32 jnp.dot; median of {args.peak_repeats} repeats of >= 0.2 s after warm-up)")
    mr = lambda m, k, n, t=False: matmul_rate(m, k, n, transpose_a=t, repeats=args.peak_repeats)
    peak_rows = [mr(n, n, n) for n in args.peak_sizes]
    shapes = step_shapes(config, B)
    shape_rows = []
    for (m, k, n, t), w_flops in shapes:
        r = mr(m, k, n, t)
        r["step_flop_share"] = w_flops / sum(wf for _, wf in shapes)
        shape_rows.append(r)
    extra_rows = []
    if config.kind == "gncn_pdh" and not args.no_baseline:
        d = config.dims()
        for m, k, n in [(B, d[1] + d[2], d[0]), (B, d[2] + d[3], d[1]), (B, d[0] + d[1], d[1])]:
            extra_rows.append(mr(m, k, n))
    fl_rows = [r["foreign_cores_busy"] for r in [*peak_rows, *shape_rows, *extra_rows]]
    info["foreign_cores_busy_during_peak"] = None if None in fl_rows else max(fl_rows)
    peak_row = max(peak_rows, key=lambda r: r["gflops"])
    peak = peak_row["gflops"]
    best_peak = max(r["best_gflops"] for r in peak_rows)
    # FLOP-weighted harmonic mean: the rate the step would reach if each of its matmuls ran at its
    # own isolated rate and nothing else took time.
    shape_peak = sum(r["step_flop_share"] for r in shape_rows) / sum(
        r["step_flop_share"] / r["gflops"] for r in shape_rows
    )

    def shape_name(r):
        lhs = f"({r['k']}x{r['m']}).T" if r["transpose_a"] else f"{r['m']}x{r['k']}"
        return f"{lhs} @ {r['k']}x{r['n']}"

    rows = []
    for kind, rs in (("square", peak_rows), ("step", shape_rows), ("fused", extra_rows)):
        for r in rs:
            rows.append(
                [
                    shape_name(r),
                    kind,
                    f"{r['gflops']:.1f}",
                    f"{r['best_gflops']:.1f}",
                    f"{100 * r['step_flop_share']:.1f}%" if "step_flop_share" in r else "",
                    f"{r['n_clean']}/{r['repeats']}",
                ]
            )
    print(_fmt_table(rows, ["shape", "kind", "GFLOP/s (median)", "GFLOP/s (best)", "step FLOPs", "clean"]))
    print(
        f"  peak = {peak:.1f} GFLOP/s ({shape_name(peak_row)}, median);  step-shape weighted peak = "
        f"{shape_peak:.1f} GFLOP/s ({shape_peak / peak:.3f} of peak)"
    )
    print()

    # ---- the training steps -------------------------------------------------------------------
    # Compile (first call, timed apart) and warm each step, then interleave the timed rounds
    # (predcode, plain, fused, predcode, ...) so that a change of machine speed affects all alike.
    # A fresh trainer: the cost-analysis compile above must not make predcode's first call look cheap.
    timed_trainer = make_trainer(model)
    inits: dict[str, Callable] = {}
    steps: dict[str, tuple[Callable, list]] = {"predcode": (timed_trainer.step, [params, opt_state, x, weights])}
    # Executed matmul FLOPs of each step (the grouped lateral form skips the phi(z) V products).
    flops_of: dict[str, float] = {"predcode": step_flops}
    if config.flags["lateral"]:
        grouped_cfg = dataclasses.replace(config, lateral_form="grouped")
        grouped = make_trainer(GNCN(grouped_cfg))
        steps["predcode_grouped"] = (grouped.step, [params, grouped.init(params), x, weights])
        inits["predcode_grouped"] = grouped.init
        flops_of["predcode_grouped"] = jaxpr_flops(jax.make_jaxpr(grouped.step)(params, opt_state, x, weights))["dot"]
    if config.kind == "gncn_pdh" and not args.no_baseline:
        for name, fused in (("plain_jax", False), ("plain_jax_fused", True)):
            init, step = make_plain_pdh_step(config, fused=fused)
            steps[name] = (step, [params, init(params), x, weights])
            inits[name] = init
            flops_of[name] = step_flops
    compile_s: dict[str, float] = {}
    for name, (fn, a) in steps.items():
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*a))
        compile_s[name] = time.perf_counter() - t0
        a[:2] = out[:2]
        for _ in range(args.warmup):
            out = jax.block_until_ready(fn(*a))
            a[:2] = out[:2]
    # Each round also re-times the peak matmul just before each step, so that a slow drift of the
    # machine's speed (other tenants, clocks) cancels in the per-round ratio.
    pn = peak_row["m"]
    ka, kb = jax.random.split(jax.random.key(3))
    pa, pb = jax.random.normal(ka, (pn, pn)), jax.random.normal(kb, (pn, pn))
    pf = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(pf(pa, pb))
    p_inner = max(1, int(0.3 / peak_row["median_s"]))

    def peak_loop():
        for _ in range(p_inner):
            out = pf(pa, pb)
        return out

    times: dict[str, list[float]] = {n: [] for n in steps}
    foreign: dict[str, list[float | None]] = {n: [] for n in steps}
    adj: dict[str, list[float]] = {n: [] for n in steps}
    for _ in range(args.rounds):
        for name, (fn, a) in steps.items():
            pdt, _, _ = timed(peak_loop)
            dt, fl_, out = timed(lambda fn=fn, a=a: fn(*a))
            times[name].append(dt)
            foreign[name].append(fl_)
            adj[name].append((flops_of[name] / dt) / (2.0 * pn**3 * p_inner / pdt))
            a[:2] = out[:2]
    maxdiff: dict[str, float] = {}
    if len(steps) > 1:
        # Sanity: one step from the same start gives the same parameters as predcode's.
        p_ref, _, _ = trainer.step(params, trainer.init(params), x, weights)
        for name in inits:
            p_b, _, _ = steps[name][0](params, inits[name](params), x, weights)
            maxdiff[name] = max(float(jnp.max(jnp.abs(p_ref[k] - p_b[k]))) for k in p_ref)

    print(
        f"Training step, batch {B}: compile (first call) timed apart, {args.warmup} warm-up calls, "
        f"median of {args.rounds} rounds (interleaved)"
    )
    rows, out_steps = [], {}
    for name in steps:
        summ = summarise(times[name], foreign[name])
        med = summ["median_s"]
        achieved = flops_of[name] / med / 1e9
        best = flops_of[name] / summ["min_s"] / 1e9
        rec = {
            "executed_matmul_flops": flops_of[name],
            "compile_s": compile_s[name],
            **summ,
            "samples_per_s": B / med,
            "gflops": achieved,
            "fraction_of_peak": achieved / peak,
            "fraction_of_step_shape_peak": achieved / shape_peak,
            "best_gflops": best,
            "best_fraction_of_best_peak": best / best_peak,
            "fraction_of_adjacent_peak_per_round": adj[name],
            "fraction_of_adjacent_peak": float(np.median(adj[name])),
        }
        if name in maxdiff:
            rec["max_abs_param_diff_vs_predcode"] = maxdiff[name]
        out_steps[name] = rec
        rows.append(
            [
                name,
                f"{compile_s[name]:.2f}",
                f"{1e3 * med:.1f}",
                f"{1e3 * summ['min_s']:.1f}",
                f"{B / med:.0f}",
                f"{achieved:.1f}",
                f"{rec['fraction_of_peak']:.3f}",
                f"{rec['fraction_of_step_shape_peak']:.3f}",
                f"{rec['best_fraction_of_best_peak']:.3f}",
                f"{rec['fraction_of_adjacent_peak']:.3f}",
                f"{summ['n_clean']}/{len(times[name])}",
            ]
        )
    print(
        _fmt_table(
            rows,
            [
                "step",
                "compile s",
                "median ms",
                "min ms",
                "samples/s",
                "GFLOP/s",
                "of peak",
                "of shape-peak",
                "best/best",
                "of adj. peak",
                "clean",
            ],
        )
    )
    print(
        f"  GFLOP/s counts each step's executed matmul FLOPs; of peak = median GFLOP/s / peak; "
        f"of shape-peak = median GFLOP/s / step-shape weighted peak; "
        f"best/best = fastest round / fastest square repeat ({best_peak:.1f} GFLOP/s); of adj. peak = "
        f"median over rounds of the step's rate / the {pn}^2 matmul rate timed just before it"
    )
    for name, v in maxdiff.items():
        print(f"  {name}: max |param - predcode param| after one step = {v:.2e}")
    info["loadavg_end"] = _loadavg()
    allf = [v for n in steps for v in foreign[n] if v is not None]
    info["foreign_cores_busy_during_steps"] = max(allf) if allf else None
    info["quiet_wait_s"] = QUIET["waited"]
    fp, fs = info["foreign_cores_busy_during_peak"], info["foreign_cores_busy_during_steps"]
    r2 = lambda v: v if v is None else round(v, 2)
    print(
        f"\n# load average at end: {info['loadavg_end']}; other processes used at most {r2(fp)} cores "
        f"during a timed matmul repeat and {r2(fs)} during a timed step (of {info['nproc']}); "
        f"waited {QUIET['waited']:.0f} s for quiet; 'clean' = samples with < {QUIET['threshold']} "
        f"foreign cores (medians use only those when at least half are)"
    )
    pc = out_steps["predcode"]["fraction_of_peak"]
    print(
        f"# predcode step: {out_steps['predcode']['samples_per_s']:.0f} samples/s, "
        f"{out_steps['predcode']['gflops']:.1f} GFLOP/s = {pc:.3f} of matmul peak (target >= 0.90)"
        + (f"; plain JAX {out_steps['plain_jax']['fraction_of_peak']:.3f}" if "plain_jax" in out_steps else "")
    )
    if "predcode_grouped" in out_steps:
        g = out_steps["predcode_grouped"]
        print(
            f"# predcode, lateral_form = grouped: {g['samples_per_s']:.0f} samples/s "
            f"({g['samples_per_s'] / out_steps['predcode']['samples_per_s']:.3f}x the default step), "
            f"{g['executed_matmul_flops'] / 1e9:.3f} executed matmul GFLOP a step "
            f"({g['executed_matmul_flops'] / step_flops:.3f} of the default's), {g['fraction_of_peak']:.3f} of peak"
        )

    report = {
        "machine": info,
        "config": {
            **config.to_dict(),
            "batch": B,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "peak_repeats": args.peak_repeats,
            "quiet_threshold": args.quiet_threshold,
            "max_wait": args.max_wait,
        },
        "flops": {
            "analytic": fl,
            "jaxpr_dot": jx["dot"],
            "jaxpr_linalg": jx["linalg"],
            "jaxpr_n_dot": jx["n_dot"],
            "xla_cost_analysis": xla,
            "xla_cost_analysis_one_settle_step": xla_body,
            "xla_cost_analysis_extrapolated": xla_extrap,
            "step_matmul_flops": step_flops,
        },
        "peak": {
            "square": peak_rows,
            "step_shapes": shape_rows,
            "fused_shapes": extra_rows,
            "peak_gflops": peak,
            "best_peak_gflops": best_peak,
            "step_shape_weighted_peak_gflops": shape_peak,
        },
        "steps": out_steps,
    }
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"# wrote {args.json}")
    return report


if __name__ == "__main__":
    from predcode.threads import lapack_threads

    with lapack_threads():  # as measured: jaxlib's CPU LAPACK on one OpenBLAS thread (predcode/threads.py)
        main()
