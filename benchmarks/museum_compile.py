"""Compile time of each GNCN museum model's training and evaluation step, each in a fresh process.

For every museum kind (batch 512, the MNIST configuration, K = 50) a new Python process builds the
model and times ``trainer.step`` and ``trainer.evaluate`` apart: tracing (``.trace``), lowering
and XLA compilation (``.lower().compile()``), and the first call against the second (what a user
waits for). A fresh process per model keeps JAX's in-memory caches from helping; the persistent
compilation cache is off unless the environment turns it on.

    .venv/bin/python benchmarks/museum_compile.py --json results/museum_compile.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def child(kind: str, batch: int) -> dict:
    t_import = time.perf_counter()
    import jax
    import jax.numpy as jnp

    from predcode.learning.step import make_trainer
    from predcode.models.gncn import GNCN, GNCNConfig

    t_import = time.perf_counter() - t_import
    model = GNCN(GNCNConfig(kind=kind))
    params = model.init(jax.random.key(0))
    trainer = make_trainer(model)
    opt = trainer.init(params)
    x = (jax.random.uniform(jax.random.key(1), (batch, model.config.x_dim)) < 0.13).astype(jnp.float32)
    w = jnp.ones((batch,), jnp.float32)
    out = {"kind": kind, "batch": batch, "jax": jax.__version__, "import_s": t_import}
    for name, fn, args in (("step", trainer.step, (params, opt, x, w)), ("evaluate", trainer.evaluate, (params, x, w))):
        jitted = getattr(fn, "unchecked", fn)
        t0 = time.perf_counter()
        traced = jitted.trace(*args)
        t1 = time.perf_counter()
        lowered = traced.lower()
        t2 = time.perf_counter()
        lowered.compile()
        t3 = time.perf_counter()
        jax.clear_caches()  # the first call below compiles again, as a user's would
        t4 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        t5 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        t6 = time.perf_counter()
        out[name] = {
            "trace_s": t1 - t0,
            "lower_s": t2 - t1,
            "xla_compile_s": t3 - t2,
            "trace_lower_compile_s": t3 - t0,
            "first_call_s": t5 - t4,
            "second_call_s": t6 - t5,
            "first_minus_second_s": (t5 - t4) - (t6 - t5),
        }
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--kinds", nargs="+", default=None)
    ap.add_argument("--json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.batch)))
        return
    from predcode.models.gncn import MUSEUM

    kinds = args.kinds or list(MUSEUM)
    rows = []
    info = {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "loadavg_start": os.getloadavg(),
    }
    for kind in kinds:
        p = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", kind, "--batch", str(args.batch)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"{kind:15s} step: trace {r['step']['trace_s']:.2f} + lower {r['step']['lower_s']:.2f} + XLA "
            f"{r['step']['xla_compile_s']:.2f} = {r['step']['trace_lower_compile_s']:.2f} s; first call - second "
            f"= {r['step']['first_minus_second_s']:.2f} s | evaluate {r['evaluate']['trace_lower_compile_s']:.2f} s"
            f" | peak RSS {r['peak_rss_mb']:.0f} MB"
        )
    info["loadavg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "models": rows}, fh, indent=2)


if __name__ == "__main__":
    from predcode.threads import lapack_threads

    with lapack_threads():  # as measured: jaxlib's CPU LAPACK on one OpenBLAS thread (predcode/threads.py)
        main()
