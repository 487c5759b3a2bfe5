"""Throughput of N trials vmapped in one training step (N = 1, 2, 4), per trial and in all.

Times the step ``predcode fit`` uses for trials trained together
(``predcode.experiments.trials.vmapped_steps``: the GNCN training step, vmapped over stacked
parameters, optimizer states and batches) against N calls of the plain single-trial step, on
GNCN-PDH with the MNIST sizes (784-360-360-360, K = 50). Each timing is the median of ``--reps``
steps after a compiling warm-up; both wall and process CPU time are recorded, since a shared
machine's wall time depends on its load.

    nice -n 10 .venv/bin/python benchmarks/trials.py --json results/trials.json

See results/trials.md.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from predcode.experiments.provenance import provenance
from predcode.experiments.trials import stack_trials, vmapped_steps
from predcode.learning.step import make_trainer
from predcode.models.gncn import GNCN, GNCNConfig


def _time(fn, reps: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn()`` (which blocks until its result is ready)."""
    fn()
    wall, cpu = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return float(np.median(wall)), float(np.median(cpu))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--K", type=int, default=50)
    ap.add_argument("--trials", type=int, nargs="*", default=[1, 2, 4])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    model = GNCN(GNCNConfig(kind="gncn_pdh", K=args.K))
    trainer = make_trainer(model)
    vstep, _ = vmapped_steps(trainer)
    rng = np.random.default_rng(0)
    rows = []
    for n in args.trials:
        params = [model.init(jax.random.key(s)) for s in range(n)]
        opts = [trainer.init(p) for p in params]
        xs = [jnp.asarray((rng.random((args.batch, 784)) < 0.2).astype(np.float32)) for _ in range(n)]
        w = jnp.ones(args.batch, jnp.float32)
        sp, so, sx = stack_trials(params), stack_trials(opts), jnp.stack(xs)
        sw, active = jnp.stack([w] * n), jnp.ones(n, bool)

        def vmapped(sp=sp, so=so, sx=sx, sw=sw, active=active):
            jax.block_until_ready(vstep(sp, so, sx, sw, active))

        def sequential(params=params, opts=opts, xs=xs, w=w):
            jax.block_until_ready([trainer.step(p, o, x, w) for p, o, x in zip(params, opts, xs)])

        v_wall, v_cpu = _time(vmapped, args.reps)
        s_wall, s_cpu = _time(sequential, args.reps)
        row = dict(
            trials=n,
            vmapped_wall_s=v_wall,
            vmapped_cpu_s=v_cpu,
            sequential_wall_s=s_wall,
            sequential_cpu_s=s_cpu,
            vmapped_images_per_s_per_trial=args.batch / v_wall,
            sequential_images_per_s_per_trial=args.batch / s_wall,
            vmapped_images_per_cpu_s_per_trial=args.batch / v_cpu,
            sequential_images_per_cpu_s_per_trial=args.batch / s_cpu,
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = dict(
        **provenance(),
        model="gncn_pdh",
        K=args.K,
        batch=args.batch,
        reps=args.reps,
        devices=[str(d) for d in jax.devices()],
        rows=rows,
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    from predcode.threads import lapack_threads

    with lapack_threads():  # as measured: jaxlib's CPU LAPACK on one OpenBLAS thread (predcode/threads.py)
        main()
