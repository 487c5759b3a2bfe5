"""Profile a GNCN museum training step: XLA thunk time by category, from a jax.profiler trace.

    .venv/bin/python benchmarks/profile_step.py [BATCH] [KIND]      # default 512 gncn_pdh

Traces 3 steps (after 2 warm-up steps) with ``jax.profiler``, reads the trace back with jaxlib's
``ProfileData`` and sums the durations of the thunks XLA's CPU threads ran, by category: matmuls
(YNNPACK fusions / dots), elementwise and reduction fusions, LAPACK (Cholesky, triangular solve),
copies. The sum is over threads (two threads running a matmul together count twice), so the
shares, not the milliseconds, compare with the wall time; time a thread spent waiting for the
other is listed apart. ``PREDCODE_LAPACK_THREADS=2`` shows the LAPACK cost with OpenBLAS's own
threads (predcode's default is 1, see predcode/threads.py).
"""

import collections
import glob
import shutil
import sys

import jax
import jax.numpy as jnp
from jax._src.lib import _profile_data

from predcode.learning.step import make_trainer
from predcode.models.gncn import GNCN, GNCNConfig

N_STEPS = 3
TRACE_DIR = "/tmp/predcode_profile_step"


def category(name: str) -> str | None:
    if name.startswith(("while", "ThunkExecutor", "end:")):
        return None  # containers of the thunks below
    if "Await" in name:
        return "waiting for the other thread"
    if name.startswith(("ynn_fusion", "dot")):
        return "matmul (YNN fusions / dots)"
    if "cholesky" in name or "triangular" in name:
        return "LAPACK cholesky + trsm"
    if "copy" in name:
        return "copy"
    return "elementwise / reduce fusions"


def main() -> None:
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    kind = sys.argv[2] if len(sys.argv) > 2 else "gncn_pdh"
    model = GNCN(GNCNConfig(kind=kind))
    params = model.init(jax.random.key(0))
    trainer = make_trainer(model)
    opt = trainer.init(params)
    x = (jax.random.uniform(jax.random.key(2), (batch, model.config.x_dim)) < 0.13).astype(jnp.float32)
    w = jnp.ones((batch,))
    step = trainer.step.unchecked
    for _ in range(2):
        jax.block_until_ready(step(params, opt, x, w))
    shutil.rmtree(TRACE_DIR, ignore_errors=True)
    jax.profiler.start_trace(TRACE_DIR)
    for _ in range(N_STEPS):
        jax.block_until_ready(step(params, opt, x, w))
    jax.profiler.stop_trace()

    path = sorted(glob.glob(TRACE_DIR + "/**/*.xplane.pb", recursive=True))[-1]
    data = _profile_data.ProfileData.from_file(path)
    spent: collections.Counter = collections.Counter()
    wall = 0
    for plane in data.planes:
        for line in plane.lines:
            if line.name == "python":
                wall += sum(ev.duration_ns for ev in line.events if "block_until_ready" in ev.name)
            if "Eigen" not in line.name:
                continue
            for ev in line.events:
                cat = category(ev.name)
                if cat:
                    spent[cat] += ev.duration_ns
    total = sum(v for k, v in spent.items() if not k.startswith("waiting"))
    print(
        f"{kind} batch {batch}: wall per step {wall / N_STEPS / 1e6:.0f} ms (profiler on); "
        "thunk time summed over XLA's threads, per step:"
    )
    for cat, ns in spent.most_common():
        share = "(not in the shares)" if cat.startswith("waiting") else f"{100 * ns / total:5.1f}%"
        print(f"  {cat:30s} {ns / N_STEPS / 1e6:8.1f} ms  {share}")


if __name__ == "__main__":
    from predcode.threads import lapack_threads

    with lapack_threads():  # as measured: jaxlib's CPU LAPACK on one OpenBLAS thread (predcode/threads.py)
        main()
