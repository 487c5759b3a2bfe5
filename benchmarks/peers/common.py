"""Shared pieces of the peer benchmark: the network, a float64 NumPy oracle, FLOPs, timing, the worker loop.

Every implementation (predcode, plain JAX, PCX, ngc-learn) computes the same training step of one
generative predictive-coding network, here in the row-vector convention (a batch is ``B x n``)::

    layers      x (784, clamped) <- z1 (360) <- z2 (360) <- z3 (360)
    prediction  mu_{l-1} = relu(z_l) W_l             W_l: (d_l, d_{l-1}), no bias
    error       e_0 = x - mu_0,  e_l = z_l - mu_l    (Gaussian, unit variance), e_3 = 0
    drive       dz_l = (e_{l-1} W_l^T) * relu'(z_l) - e_l,  relu'(z) = 1[z >= 0]
    inference   z_l <- z_l + dt dz_l, K = 50 Euler steps of dt = 0.1 from z = 0
    learning    W_l <- W_l + (lr / B) relu(z_l)^T e_{l-1}  (one SGD step on the batch-mean energy)

``relu'(0) = 1`` is the legacy ngc-learn convention (ngc-learn 3's ``d_relu`` is ``x >= 0`` too):
with JAX's ``relu'(0) = 0`` and zero initial states no layer would ever move. The drive is minus
the gradient of the energy ``E = 1/2 sum_l |e_l|^2`` under that convention. Errors are recomputed
after every Euler step, so one step executes 51 prediction passes, 50 drive passes and one
Hebbian update.

This module imports only NumPy and JAX, so that it runs in every peer's virtual environment.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Spec:
    """The benchmark network and step (see the module docstring)."""

    dims: tuple[int, ...] = (784, 360, 360, 360)
    K: int = 50
    dt: float = 0.1
    lr: float = 0.1
    batch: int = 512
    weight_sd: float = 0.05
    seed: int = 0
    density: float = 0.13  # fraction of 1 pixels in the synthetic binary batch (MNIST: ~0.13)

    @property
    def L(self) -> int:
        return len(self.dims) - 1

    def to_json(self) -> dict:
        d = asdict(self)
        d["dims"] = list(self.dims)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Spec:
        d = dict(d)
        d["dims"] = tuple(d["dims"])
        return cls(**d)


def make_inputs(spec: Spec) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Initial weights ``W1..WL`` (float32, N(0, weight_sd^2)) and one binary batch ``x`` (B, d_0)."""
    rng = np.random.default_rng(spec.seed)
    d = spec.dims
    W = {
        f"W{l}": (spec.weight_sd * rng.standard_normal((d[l], d[l - 1]))).astype(np.float32)
        for l in range(1, spec.L + 1)
    }
    x = (rng.random((spec.batch, d[0])) < spec.density).astype(np.float32)
    return W, x


def reference_step(spec: Spec, W: dict[str, np.ndarray], x: np.ndarray) -> dict[str, Any]:
    """The training step in float64 NumPy: the oracle every implementation is checked against."""
    L, B = spec.L, x.shape[0]
    W64 = {k: v.astype(np.float64) for k, v in W.items()}
    x = x.astype(np.float64)
    relu = lambda a: np.maximum(a, 0.0)
    z = [np.zeros((B, d)) for d in spec.dims[1:]]

    def errors(z):
        e = []
        for l in range(1, L + 1):  # e_{l-1} from layer l
            mu = relu(z[l - 1]) @ W64[f"W{l}"]
            e.append((x if l == 1 else z[l - 2]) - mu)
        return e

    e = errors(z)
    for _ in range(spec.K):
        dz = []
        for l in range(1, L + 1):
            d = (e[l - 1] @ W64[f"W{l}"].T) * (z[l - 1] >= 0)
            if l < L:
                d = d - e[l]
            dz.append(d)
        z = [zl + spec.dt * d for zl, d in zip(z, dz)]
        e = errors(z)
    new_W = {f"W{l}": W64[f"W{l}"] + (spec.lr / B) * relu(z[l - 1]).T @ e[l - 1] for l in range(1, L + 1)}
    energy = 0.5 * sum(float(np.sum(el * el)) for el in e) / B
    return {"W": new_W, "z": z, "energy": energy}


def step_flops(spec: Spec) -> float:
    """``2 m n k`` of every matmul of one step: (K+1) prediction passes, K drive passes, 1 update."""
    d, B = spec.dims, spec.batch
    one_pass = sum(2.0 * B * d[l] * d[l - 1] for l in range(1, spec.L + 1))
    return (spec.K + 1) * one_pass + spec.K * one_pass + one_pass


def gram_step_flops(spec: Spec) -> float:
    """Matmul FLOPs of the Gram-form step (``predcode_gram``): the clamped layer's two ``d1 x d0``
    products per pass become one ``d1 x d1`` product, after ``x W1^T`` and ``W1 W1^T`` once; the
    error of the clamped layer is formed once after settling for the update."""
    d, B = spec.dims, spec.batch
    upper = sum(2.0 * B * d[l] * d[l - 1] for l in range(2, spec.L + 1))
    predict = upper + 2.0 * B * d[1] * d[1]
    setup = 2.0 * d[1] * d[0] * d[1] + 2.0 * B * d[0] * d[1]
    final_error = 2.0 * B * d[1] * d[0]
    update = sum(2.0 * B * d[l] * d[l - 1] for l in range(1, spec.L + 1))
    return (spec.K + 1) * predict + spec.K * upper + setup + final_error + update


# ---------------------------------------------------------------------------------------------
# Machine load (other tenants share the 2 cores)
# ---------------------------------------------------------------------------------------------
def cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall, busy CPU seconds of the whole machine, CPU seconds of this process)."""
    try:
        with open("/proc/stat") as fh:
            f = [int(v) for v in fh.readline().split()[1:]]
        busy = (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")
        t = os.times()
        return time.perf_counter(), busy, t.user + t.system
    except (OSError, ValueError, IndexError):
        return None


def foreign_load(start, end) -> float | None:
    """Average number of cores other processes kept busy between two snapshots."""
    if start is None or end is None or end[0] <= start[0]:
        return None
    return max(0.0, ((end[1] - start[1]) - (end[2] - start[2])) / (end[0] - start[0]))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB, from getrusage)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def device_peak_mb() -> float | None:
    """Peak memory the process's first JAX device has held so far (MB), where the backend reports it
    (GPUs do; the CPU backend does not: None)."""
    try:
        import jax

        stats = jax.devices()[0].memory_stats()
        return stats["peak_bytes_in_use"] / 2**20 if stats and "peak_bytes_in_use" in stats else None
    except Exception:
        return None


def current_rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


# ---------------------------------------------------------------------------------------------
# Implementations and the worker
# ---------------------------------------------------------------------------------------------
@dataclass
class Impl:
    """One implementation, built on one venv's JAX.

    ``step()`` runs one training step on the clamped batch and blocks until it is done, carrying
    the weights to the next call as a training loop would; ``set_weights(W)`` and ``weights()`` /
    ``states()`` (float32 NumPy, ``W_l`` as (d_l, d_{l-1}), ``z_l`` as (B, d_l)) serve the check.
    """

    name: str
    style: str
    step: Callable[[], Any]
    set_weights: Callable[[dict[str, np.ndarray]], None]
    weights: Callable[[], dict[str, np.ndarray]]
    states: Callable[[], list[np.ndarray]]
    library: str = ""
    notes: str = ""
    extra: dict = field(default_factory=dict)


def _matmul_peak(n: int = 1024, min_time: float = 0.25):
    """A jitted float32 ``n x n @ n x n`` on this venv's JAX: returns a function timing one repeat."""
    import jax
    import jax.numpy as jnp

    ka, kb = jax.random.split(jax.random.PRNGKey(1))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(f(a, b))
    t0 = time.perf_counter()
    for _ in range(3):
        out = f(a, b)
    jax.block_until_ready(out)
    inner = max(1, int(min_time / max((time.perf_counter() - t0) / 3, 1e-6)))

    def once() -> tuple[float, float | None]:
        s0 = cpu_snapshot()
        t0 = time.perf_counter()
        for _ in range(inner):
            out = f(a, b)
        jax.block_until_ready(out)
        dt = time.perf_counter() - t0
        return 2.0 * n**3 * inner / dt / 1e9, foreign_load(s0, cpu_snapshot())

    return once


def serve(build: Callable[[str, Spec, dict, np.ndarray], Impl]) -> None:
    """Worker loop: read one JSON command a line on stdin, answer one JSON line on stdout.

    Commands: ``{"cmd": "build", "impl": name, "spec": {...}}`` (build, compile with the first
    step, report compile time and memory), ``{"cmd": "check", "out": path}`` (one step from the
    initial weights; write weights and states to ``path`` as .npz), ``{"cmd": "round", "calls": n}``
    (time the matmul peak, then ``n`` steps), ``{"cmd": "quit"}``.
    """
    out = sys.stdout
    sys.stdout = sys.stderr  # libraries' prints must not corrupt the protocol
    impl = spec = W0 = x = peak = None

    def reply(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        try:
            cmd = msg["cmd"]
            if cmd == "quit":
                reply({"ok": True})
                return
            if cmd == "build":
                import jax

                spec = Spec.from_json(msg["spec"])
                W0, x = make_inputs(spec)
                rss0 = current_rss_mb()
                t0 = time.perf_counter()
                impl = build(msg["impl"], spec, W0, x)
                t_build = time.perf_counter() - t0
                t0 = time.perf_counter()
                impl.step()  # first call: trace + compile + one run
                t_first = time.perf_counter() - t0
                t0 = time.perf_counter()
                impl.step()
                t_second = time.perf_counter() - t0
                peak = _matmul_peak()
                reply(
                    {
                        "ok": True,
                        "name": impl.name,
                        "style": impl.style,
                        "library": impl.library,
                        "notes": impl.notes,
                        "extra": impl.extra,
                        "jax": jax.__version__,
                        "python": sys.version.split()[0],
                        "build_s": t_build,
                        "first_call_s": t_first,
                        "second_call_s": t_second,
                        "compile_s": max(0.0, t_first - t_second),
                        "rss_before_build_mb": rss0,
                        "peak_rss_mb": peak_rss_mb(),
                        "device": str(jax.devices()[0]),
                        "device_kind": getattr(jax.devices()[0], "device_kind", None),
                    }
                )
            elif cmd == "check":
                impl.set_weights(W0)
                impl.step()
                np.savez(msg["out"], **impl.weights(), **{f"z{l + 1}": z for l, z in enumerate(impl.states())})
                reply({"ok": True})
            elif cmd == "round":
                gflops, fl_peak = peak()
                times, foreign = [], []
                for _ in range(int(msg.get("calls", 3))):
                    s0 = cpu_snapshot()
                    t0 = time.perf_counter()
                    impl.step()
                    times.append(time.perf_counter() - t0)
                    foreign.append(foreign_load(s0, cpu_snapshot()))
                reply(
                    {
                        "ok": True,
                        "peak_gflops": gflops,
                        "peak_foreign": fl_peak,
                        "times_s": times,
                        "foreign": foreign,
                        "peak_rss_mb": peak_rss_mb(),
                        "device_peak_mb": device_peak_mb(),
                    }
                )
            else:
                reply({"ok": False, "error": f"unknown command {cmd!r}"})
        except Exception as exc:  # report, keep serving
            reply({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})


# ---------------------------------------------------------------------------------------------
# Accuracy runs of a peer's own code (pcx_mlp.py, jpc_mupc.py): data, provenance, results file
# ---------------------------------------------------------------------------------------------
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read_idx(path: str) -> np.ndarray:
    import gzip

    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_idx(dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images (n, 784) uint8, labels (n,) uint8)`` of ``split`` ("train" or "test") from the original
    idx.gz files in ``$PREDCODE_DATA/<dataset>`` (default ``../shared/data`` beside the checkout)."""
    root = os.path.join(os.environ.get("PREDCODE_DATA", os.path.join(ROOT, "..", "shared", "data")), dataset)
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"))
    return images.reshape(len(images), -1), _read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"))


def run_provenance() -> dict[str, str]:
    """Commit of the checkout (short hash, ``""`` outside git), UTC date and machine, for a result record."""
    import datetime
    import platform
    import subprocess

    try:
        commit = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = ""
    return {
        "commit": commit,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }


def append_record(path: str, record: dict) -> None:
    """Append ``record`` to the JSON list in ``path`` (created if missing), replaced in one rename."""
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            rows = json.load(f)
    rows.append(record)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(rows, f, indent=1)
    os.replace(tmp, path)
