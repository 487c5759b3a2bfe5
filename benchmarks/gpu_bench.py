"""The measurements of benchmarks/gpu.sh (issue 22), one subcommand each, one JSON fragment each.

``gpu.sh`` runs every subcommand in its own process under its own ``timeout`` and then ``report``,
which merges the fragments of its work folder into ``gpu.json`` and ``gpu.md``. Every fragment
carries its provenance (command, commit, date, device) and says whether it is a dry run
(``PREDCODE_GPU_DRY_RUN=1``: tiny sizes on the CPU, numbers that are not results).

    python benchmarks/gpu_bench.py peak     --out W/peak.json [--n 8192]
    python benchmarks/gpu_bench.py epoch    --out W/epoch.json [--batch 200 --K 50 --steps 300]
    python benchmarks/gpu_bench.py trials   --out W/trials.json [--trials 1 2 4 8]
    python benchmarks/gpu_bench.py settle   --out W/settle_NAME.json --name NAME   (XLA_FLAGS set by gpu.sh)
    python benchmarks/gpu_bench.py variants                                        (NAME<TAB>XLA flags lines)
    python benchmarks/gpu_bench.py failed   --out W/NAME.json --figure NAME --status timeout --rc 124 --log L
    python benchmarks/gpu_bench.py report   --work W --json R/gpu.json --md R/gpu.md

See benchmarks/README.md, section ``gpu.sh``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The settle-loop variants XLA offers without new code: name -> (extra XLA flags, extra environment,
# what it tries). ``default`` is the reference the others are compared with. An XLA build that does
# not know a flag aborts that variant's process only; gpu.sh records the failure and goes on.
VARIANTS: dict[str, tuple[str, dict[str, str], str]] = {
    "default": ("", {}, "XLA's defaults (float32 matmuls at precision highest)"),
    "no_command_buffer": (
        "--xla_gpu_enable_command_buffer=",
        {},
        "command buffers (CUDA graphs) off: every kernel launched one by one",
    ),
    "command_buffer_while": (
        "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL "
        "--xla_gpu_graph_min_graph_size=1",
        {},
        "the whole settle loop (while and its body) captured as one CUDA graph",
    ),
    "while_unroll_full": (
        "--xla_gpu_enable_while_loop_unrolling=WHILE_LOOP_UNROLLING_FULL_UNROLL",
        {},
        "the settle loop unrolled by XLA: fusions may cross settling steps",
    ),
    "tf32": (
        "",
        {"JAX_DEFAULT_MATMUL_PRECISION": "default"},  # no '|' in flags or values: gpu.sh splits on it
        "float32 matmuls on the tensor cores in TF32 (not float32: checked against the tolerance anyway)",
    ),
}
FIGURES = ("peak", "epoch", "trials", "peers_b512", "peers_b4096", *(f"settle_{v}" for v in VARIANTS))
# Float32 arithmetic against the float64 reference over 50 settling steps (tests/test_gncn_dynamics.py).
SETTLE_RTOL = 1e-4


def dry_run() -> bool:
    return os.environ.get("PREDCODE_GPU_DRY_RUN") == "1"


def _commit() -> str:
    c = os.environ.get("PREDCODE_COMMIT")
    if c:
        return c
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _nvidia_smi() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def device_info() -> dict[str, Any]:
    import jax

    d = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": str(d),
        "device_kind": getattr(d, "device_kind", None),
        "n_devices": jax.device_count(),
        "nvidia_smi": _nvidia_smi(),
        "jax": jax.__version__,
    }


def device_name(info: dict[str, Any]) -> str:
    return f"{info.get('device_kind') or info.get('device')} ({info.get('backend')}, jax {info.get('jax')})"


def provenance(figure: str) -> dict[str, Any]:
    """Command (with the environment that changes the numbers), commit, UTC date, device."""
    env = {
        k: os.environ[k]
        for k in ("XLA_FLAGS", "JAX_DEFAULT_MATMUL_PRECISION", "JAX_PLATFORMS", "XLA_PYTHON_CLIENT_PREALLOCATE")
        if k in os.environ
    }
    cmd = " ".join(
        shlex.quote(a) for a in [os.path.basename(sys.executable), os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]
    )
    info = device_info()
    return {
        "figure": figure,
        "dry_run": dry_run(),
        "command": " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + (" " if env else "") + cmd,
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "device": device_name(info),
        "device_info": info,
    }


def device_peak_mb() -> float | None:
    """Peak memory held on the first device so far (MB); None where the backend does not say (CPU)."""
    import jax

    try:
        s = jax.devices()[0].memory_stats()
    except Exception:
        return None
    return s["peak_bytes_in_use"] / 2**20 if s and "peak_bytes_in_use" in s else None


def write(path: str, obj: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as fh:
        json.dump(obj, fh, indent=1, default=float)
    os.replace(path + ".tmp", path)


def _median_time(fn, reps: int) -> tuple[float, float, list[float]]:
    import jax
    import numpy as np

    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), float(np.min(ts)), ts


# ---------------------------------------------------------------------------------------------
# peak: a large float32 matmul, at precision highest (true float32) and default (TF32 on GPUs)
# ---------------------------------------------------------------------------------------------
def cmd_peak(a: argparse.Namespace) -> None:
    import jax
    import jax.numpy as jnp

    n = a.n
    ka, kb = jax.random.split(jax.random.key(0))
    x, y = jax.random.normal(ka, (n, n), jnp.float32), jax.random.normal(kb, (n, n), jnp.float32)
    rows = {}
    for prec in ("highest", "default"):
        f = jax.jit(lambda p, q, prec=prec: jnp.dot(p, q, precision=prec))
        t0 = time.perf_counter()
        jax.block_until_ready(f(x, y))
        compile_s = time.perf_counter() - t0
        # Enough back-to-back products for >= 0.2 s a sample (one product of 8192^2 is ~20 ms on an H200).
        one, _, _ = _median_time(lambda f=f: f(x, y), 3)
        inner = max(1, int(0.2 / max(one, 1e-6)))

        def loop(f=f, inner=inner):
            out = None
            for _ in range(inner):
                out = f(x, y)
            return out

        med, best, _ = _median_time(loop, a.repeats)
        rows[prec] = {
            "n": n,
            "inner": inner,
            "compile_s": compile_s,
            "median_s_per_matmul": med / inner,
            "tflops": 2.0 * n**3 * inner / med / 1e12,
            "best_tflops": 2.0 * n**3 * inner / best / 1e12,
        }
    write(
        a.out,
        {
            **provenance("peak"),
            "status": "ok",
            "what": f"jitted jnp.dot of two random {n}x{n} float32 matrices, median of {a.repeats} samples",
            "highest": rows["highest"],
            "default": rows["default"],
            "peak_tflops": rows["highest"]["tflops"],
            "device_peak_mb": device_peak_mb(),
        },
    )


# ---------------------------------------------------------------------------------------------
# epoch: GNCN-PDH MNIST training epoch (60,000 images at batch 200 = 300 steps), K = 50
# ---------------------------------------------------------------------------------------------
def _hlo_settle_ops(compiled_text: str) -> dict[str, Any]:
    """Top-level instructions of each while body in optimized HLO: roughly the kernels one
    settling step launches (fusions, library calls) when no command buffer groups them."""
    comps: dict[str, list[str]] = {}
    name = None
    for line in compiled_text.splitlines():
        m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if m:
            name = m.group(1)
            comps[name] = []
        elif line.startswith("}"):
            name = None
        elif name is not None and "=" in line:
            comps[name].append(line)
    skip = {"parameter", "get-tuple-element", "tuple", "constant", "bitcast", "copy-start", "copy-done"}
    bodies = []
    for lines in comps.values():
        for ln in lines:
            m = re.search(r"\swhile\(.*body=%?([\w.\-]+)", ln)
            if m and m.group(1) in comps:
                ops: dict[str, int] = {}
                for b in comps[m.group(1)]:
                    op = re.search(r"=\s*\S+\s+([\w\-]+)\(", b)
                    if op and op.group(1) not in skip:
                        ops[op.group(1)] = ops.get(op.group(1), 0) + 1
                bodies.append({"body": m.group(1), "ops": ops, "launch_like": sum(ops.values())})
    return {"n_while": len(bodies), "while_bodies": bodies, "fusions_total": compiled_text.count(" fusion(")}


def _gncn_problem(batch: int, K: int, seed: int = 0):
    import jax
    import jax.numpy as jnp

    from predcode.learning.step import make_trainer
    from predcode.models.gncn import GNCN, GNCNConfig

    model = GNCN(GNCNConfig(kind="gncn_pdh", K=K))
    params = model.init(jax.random.key(seed))
    trainer = make_trainer(model)
    x = (jax.random.uniform(jax.random.key(seed + 1), (batch, 784)) < 0.13).astype(jnp.float32)
    return model, trainer, params, x, jnp.ones((batch,), jnp.float32)


def _compiled_step(trainer, *args):
    """``trainer.step`` compiled once (its XLA program is also what the HLO count reads). The
    arguments are checked once here; the loop calls the program unchecked, as ``predcode fit``
    does (``trainer.step.unchecked``: the data were checked whole)."""
    check = getattr(trainer.step, "check", None)
    if check is not None:
        check(*args)
    compiled = getattr(trainer.step, "unchecked", trainer.step).lower(*args).compile()
    return compiled, compiled


def _step_flops(model, batch: int) -> float:
    sys.path.insert(0, HERE)
    from train_step import analytic_flops

    return float(analytic_flops(model.config, batch)["matmul_total"])


def cmd_epoch(a: argparse.Namespace) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    model, trainer, params, _, w = _gncn_problem(a.batch, a.K)
    opt = trainer.init(params)
    # Binary images with MNIST's density (13 % of pixels on): the step's arithmetic does not depend
    # on the pixel values, and the device machine has no data set.
    rng = np.random.default_rng(0)
    xs = [jnp.asarray((rng.random((a.batch, 784)) < 0.13).astype(np.float32)) for _ in range(a.steps)]
    t0 = time.perf_counter()
    step, compiled = _compiled_step(trainer, params, opt, xs[0], w)
    xla_compile_s = time.perf_counter() - t0
    hlo = _hlo_settle_ops(compiled.as_text())
    t0 = time.perf_counter()
    out = jax.block_until_ready(step(params, opt, xs[0], w))
    first_call_s = time.perf_counter() - t0
    p, o = out[0], out[1]
    epochs = []
    for _ in range(a.epochs):
        t0 = time.perf_counter()
        for x in xs:
            p, o = step(p, o, x, w)[:2]
        jax.block_until_ready(p)
        epochs.append(time.perf_counter() - t0)
    finite = bool(all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(p)))
    epoch_s = float(np.median(epochs))
    flops = _step_flops(model, a.batch)
    write(
        a.out,
        {
            **provenance("epoch"),
            "status": "ok",
            "what": f"GNCN-PDH (784-360-360-360) training epoch: {a.steps} trainer.step calls at batch {a.batch}, "
            f"K = {a.K}, synthetic binary images; median of {a.epochs} epochs after the compiling call",
            "batch": a.batch,
            "K": a.K,
            "steps_per_epoch": a.steps,
            "images_per_epoch": a.steps * a.batch,
            "epoch_s": epoch_s,
            "epochs_s": epochs,
            "step_s": epoch_s / a.steps,
            "step_matmul_flops": flops,
            "step_tflops": flops / (epoch_s / a.steps) / 1e12,
            "xla_compile_s": xla_compile_s,
            "first_call_s": first_call_s,
            "params_finite": finite,
            "hlo": hlo,
            "device_peak_mb": device_peak_mb(),
        },
    )


# ---------------------------------------------------------------------------------------------
# trials: N trials vmapped in one step against one trial
# ---------------------------------------------------------------------------------------------
def cmd_trials(a: argparse.Namespace) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from predcode.experiments.trials import stack_trials, vmapped_steps

    model, trainer, _, _, w = _gncn_problem(a.batch, a.K)
    vstep, _ = vmapped_steps(trainer)
    rng = np.random.default_rng(0)
    rows = []
    for n in a.trials:
        params = [model.init(jax.random.key(s)) for s in range(n)]
        sp = stack_trials(params)
        so = stack_trials([trainer.init(p) for p in params])
        sx = jnp.asarray((rng.random((n, a.batch, 784)) < 0.13).astype(np.float32))
        sw, active = jnp.stack([w] * n), jnp.ones(n, bool)
        t0 = time.perf_counter()
        out = jax.block_until_ready(vstep(sp, so, sx, sw, active))
        first = time.perf_counter() - t0
        state = list(out[:2])

        def call(state=state, sx=sx, sw=sw, active=active):
            o = vstep(state[0], state[1], sx, sw, active)
            state[0], state[1] = o[0], o[1]
            return o[0]

        jax.block_until_ready(call())
        med, best, ts = _median_time(call, a.reps)
        rows.append(
            {
                "trials": n,
                "first_call_s": first,
                "step_s": med,
                "min_step_s": best,
                "times_s": ts,
                "images_per_s_per_trial": a.batch / med,
                "images_per_s_all_trials": n * a.batch / med,
            }
        )
    base = next((r for r in rows if r["trials"] == 1), None)
    for r in rows:
        if base:
            r["time_vs_one_trial"] = r["step_s"] / base["step_s"]
            r["per_trial_throughput_vs_one_trial"] = r["images_per_s_per_trial"] / base["images_per_s_per_trial"]
    write(
        a.out,
        {
            **provenance("trials"),
            "status": "ok",
            "what": f"predcode.experiments.trials.vmapped_steps (what predcode fit --n-trials N runs), GNCN-PDH, "
            f"batch {a.batch} a trial, K = {a.K}, median of {a.reps} steps after a compiling call and a warm-up",
            "batch": a.batch,
            "K": a.K,
            "rows": rows,
            "device_peak_mb": device_peak_mb(),
        },
    )


# ---------------------------------------------------------------------------------------------
# settle: one settle-loop variant (XLA flags set by gpu.sh), timed and checked against float64
# ---------------------------------------------------------------------------------------------
def _rel_err(got, want) -> float:
    import numpy as np

    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-12))


def cmd_settle(a: argparse.Namespace) -> None:
    import jax
    import numpy as np

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import gncn_reference64 as ref

    model, trainer, params, x, w = _gncn_problem(a.batch, a.K)
    opt = trainer.init(params)
    t0 = time.perf_counter()
    step, compiled = _compiled_step(trainer, params, opt, x, w)
    xla_compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(step(params, opt, x, w))
    first_call_s = time.perf_counter() - t0
    p1 = {k: np.asarray(v) for k, v in out[0].items()}
    state = [out[0], out[1]]

    def call():
        o = step(state[0], state[1], x, w)
        state[0], state[1] = o[0], o[1]
        return o[0]

    jax.block_until_ready(call())
    med, best, ts = _median_time(call, a.reps)
    # The settle itself, against the float64 NumPy reference (independent of predcode).
    res = jax.jit(model.settle)(params, x)
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    want = ref.settle64("gncn_pdh", p64, np.asarray(x, np.float64), K=a.K)
    errs = {}
    for l in range(3):
        errs[f"z{l + 1}"] = _rel_err(res.states[l], want[f"z{l + 1}"])
        errs[f"mu{l}"] = _rel_err(res.predictions[l], want[f"mu{l}"])
        errs[f"e{l}"] = _rel_err(res.errors[l], want[f"e{l}"])
    worst = max(errs.values())
    np.savez(os.path.splitext(a.out)[0] + ".params.npz", **p1)
    flags, env, what = VARIANTS[a.name]
    write(
        a.out,
        {
            **provenance(f"settle_{a.name}"),
            "status": "ok",
            "variant": a.name,
            "variant_flags": flags,
            "variant_env": env,
            "what": what,
            "batch": a.batch,
            "K": a.K,
            "xla_compile_s": xla_compile_s,
            "first_call_s": first_call_s,
            "step_s": med,
            "min_step_s": best,
            "times_s": ts,
            "settle_rel_err_vs_float64": errs,
            "settle_max_rel_err": worst,
            "settle_within_tolerance": worst < SETTLE_RTOL,
            "tolerance": SETTLE_RTOL,
            "hlo": _hlo_settle_ops(compiled.as_text()),
            "device_peak_mb": device_peak_mb(),
        },
    )


def cmd_variants(a: argparse.Namespace) -> None:
    for name, (flags, env, _) in VARIANTS.items():
        print(name, flags, " ".join(f"{k}={v}" for k, v in env.items()), sep="|")


def cmd_failed(a: argparse.Namespace) -> None:
    """A fragment for a step that did not write its own (failed, timed out or skipped)."""
    tail = ""
    if a.log and os.path.exists(a.log):
        with open(a.log, errors="replace") as fh:
            tail = fh.read()[-3000:]
    write(
        a.out,
        {
            "figure": a.figure,
            "dry_run": dry_run(),
            "status": a.status,
            "rc": a.rc,
            "command": a.command or "",
            "commit": _commit(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "device": os.environ.get("PREDCODE_GPU_DEVICE", "unknown"),
            "log_tail": tail,
        },
    )


# ---------------------------------------------------------------------------------------------
# report: the fragments -> gpu.json and gpu.md
# ---------------------------------------------------------------------------------------------
def _peers(raw: dict, figure: str) -> dict[str, Any]:
    res = raw.get("results", {})
    dev = next((v.get("device_kind") or v.get("device") for v in res.values() if v.get("device")), None)
    jaxv = sorted({v.get("jax") for v in res.values()})
    return {
        "figure": figure,
        "dry_run": dry_run(),
        "status": "ok",
        "command": raw["machine"]["command"],
        "commit": _commit(),
        "date": raw["machine"]["date"],
        "device": f"{dev} (jax {', '.join(map(str, jaxv))})",
        "batch": raw["spec"]["batch"],
        "K": raw["spec"]["K"],
        "step_gflop": raw["step_gflop"],
        "impls": {
            k: {
                f: v.get(f)
                for f in (
                    "library",
                    "jax",
                    "samples_per_s",
                    "step_s",
                    "compile_s",
                    "device_peak_mb",
                    "peak_rss_mb",
                    "device_kind",
                )
            }
            | {"check_rel_dW_of_update": v["check"]["rel_dW_of_update"], "check_max_abs_dz": v["check"]["max_abs_dz"]}
            for k, v in res.items()
        },
        "ratios": raw.get("ratios", {}),
    }


def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return format(v, spec)
    return str(v)


def cmd_report(a: argparse.Namespace) -> None:
    figs: dict[str, dict[str, Any]] = {}
    for name in FIGURES:
        path = os.path.join(a.work, f"{name}.json")
        raw_path = os.path.join(a.work, f"{name}.raw.json")
        if name.startswith("peers_") and os.path.exists(raw_path) and not os.path.exists(path):
            with open(raw_path) as fh:
                figs[name] = _peers(json.load(fh), name)
        elif os.path.exists(path):
            with open(path) as fh:
                figs[name] = json.load(fh)
        else:
            figs[name] = {
                "figure": name,
                "dry_run": dry_run(),
                "status": "not run",
                "command": "",
                "commit": _commit(),
                "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                "device": os.environ.get("PREDCODE_GPU_DEVICE", "unknown"),
            }
    ok = lambda n: figs[n].get("status") == "ok"
    peak = figs["peak"].get("peak_tflops") if ok("peak") else None
    derived: dict[str, Any] = {}
    if ok("epoch"):
        e = figs["epoch"]
        derived["epoch_s"] = e["epoch_s"]
        derived["epoch_target_met (<= 1.0 s)"] = e["epoch_s"] <= 1.0
        if peak:
            derived["step_fraction_of_fp32_peak"] = e["step_tflops"] / peak
    if ok("trials"):
        rows = figs["trials"]["rows"]
        r8 = next(r for r in rows if r["trials"] == max(x["trials"] for x in rows))
        derived[f"{r8['trials']}_trials_time_vs_one"] = r8.get("time_vs_one_trial")
        derived["trials_target_met (8 trials <= 2x one)"] = (
            r8["trials"] == 8 and (r8.get("time_vs_one_trial") or 9) <= 2
        )
    for n in ("peers_b512", "peers_b4096"):
        if ok(n):
            derived[f"{n}_ratios"] = figs[n]["ratios"]
            sps = {k: v["samples_per_s"] for k, v in figs[n]["impls"].items() if v.get("samples_per_s")}
            ours = max((v for k, v in sps.items() if k in ("predcode", "predcode_gram")), default=None)
            peers = max((v for k, v in sps.items() if k.startswith(("pcx_", "ngc_"))), default=None)
            if ours and peers:
                derived[f"{n}_predcode_vs_best_peer"] = ours / peers
                derived[f"{n}_target_met (>= 1.5x)"] = ours / peers >= 1.5
    base = os.path.join(a.work, "settle_default.params.npz")
    if os.path.exists(base):
        import numpy as np

        p0 = dict(np.load(base))
        for v in VARIANTS:
            pv = os.path.join(a.work, f"settle_{v}.params.npz")
            if v != "default" and ok(f"settle_{v}") and os.path.exists(pv):
                p = dict(np.load(pv))
                figs[f"settle_{v}"]["params_rel_diff_vs_default"] = max(_rel_err(p[k], p0[k]) for k in p0)
                figs[f"settle_{v}"]["speedup_vs_default"] = (
                    figs["settle_default"]["step_s"] / figs[f"settle_{v}"]["step_s"] if ok("settle_default") else None
                )
    report = {
        "title": "predcode on the GPU (issue 22)" + (": DRY RUN on tiny sizes, not results" if dry_run() else ""),
        "dry_run": dry_run(),
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "script": os.environ.get("PREDCODE_GPU_COMMAND", "benchmarks/gpu.sh"),
        "notes": _notes(a.notes),
        "figures": figs,
        "derived": derived,
    }
    write(a.json, report)
    with open(a.md, "w") as fh:
        fh.write(_markdown(report))


def _notes(path: str | None) -> list[str]:
    if not path or not os.path.exists(path):
        return []
    with open(path) as fh:
        return [ln.rstrip() for ln in fh if ln.strip()]


def _markdown(rep: dict[str, Any]) -> str:
    f = rep["figures"]
    L = [f"# {rep['title']}", ""]
    if rep["dry_run"]:
        L += [
            "**DRY RUN**: `benchmarks/gpu.sh --dry-run` on the CPU at tiny sizes, to test the script. "
            "These numbers are not results.",
            "",
        ]
    L += [f"Written {rep['date']} by `{rep['script']}` at commit {rep['commit']}. Every figure below names its own", ""]
    L += ["command, commit, date and device (the table at the end).", ""]
    if rep["notes"]:
        L += ["## Setup", ""] + [f"* {n}" for n in rep["notes"]] + [""]
    ok = lambda n: f[n].get("status") == "ok"
    if ok("peak"):
        p = f["peak"]
        L += [
            "## Matmul peak",
            "",
            f"{p['what']}: precision highest (float32) {p['highest']['tflops']:.2f} TFLOP/s, precision default "
            f"{p['default']['tflops']:.2f} TFLOP/s.",
            "",
        ]
    if ok("epoch"):
        e = f["epoch"]
        frac = rep["derived"].get("step_fraction_of_fp32_peak")
        L += [
            "## GNCN-PDH MNIST epoch",
            "",
            f"{e['what']}.",
            "",
            "| epoch s | step ms | step TFLOP/s | of fp32 peak | XLA compile s | first call s | peak device MB "
            "| kernels per settle step (HLO) |",
            "|---|---|---|---|---|---|---|---|",
            f"| {e['epoch_s']:.3f} | {1e3 * e['step_s']:.2f} | {e['step_tflops']:.3f} | {_fmt(frac)} | "
            f"{e['xla_compile_s']:.2f} | {e['first_call_s']:.2f} | {_fmt(e['device_peak_mb'], '.0f')} | "
            f"{', '.join(str(b['launch_like']) for b in e['hlo']['while_bodies']) or '-'} |",
            "",
            f"Target: <= 1.0 s an epoch on one H200: {_fmt(rep['derived'].get('epoch_target_met (<= 1.0 s)'))}.",
            "",
        ]
    if ok("trials"):
        t = f["trials"]
        L += [
            "## Trials vmapped in one step",
            "",
            f"{t['what']}.",
            "",
            "| trials | step ms | images/s a trial | images/s in all | time vs one | per-trial throughput vs one "
            "| first call s |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in t["rows"]:
            L.append(
                f"| {r['trials']} | {1e3 * r['step_s']:.2f} | {r['images_per_s_per_trial']:.0f} | "
                f"{r['images_per_s_all_trials']:.0f} | {_fmt(r.get('time_vs_one_trial'))} | "
                f"{_fmt(r.get('per_trial_throughput_vs_one_trial'))} | {r['first_call_s']:.2f} |"
            )
        L += ["", f"peak device memory {_fmt(t['device_peak_mb'], '.0f')} MB (the largest N).", ""]
    for n in ("peers_b512", "peers_b4096"):
        if ok(n):
            p = f[n]
            L += [
                f"## Peer network, batch {p['batch']} (784-360x3, K = {p['K']}, {p['step_gflop']:.2f} GFLOP a step)",
                "",
                "| impl | library | jax | samples/s | step ms | compile s | peak device MB | rel. dW vs float64 |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for k, v in p["impls"].items():
                L.append(
                    f"| {k} | {v['library']} | {v['jax']} | {_fmt(v['samples_per_s'], '.0f')} | "
                    f"{_fmt(1e3 * v['step_s'] if v['step_s'] else None)} | {_fmt(v['compile_s'])} | "
                    f"{_fmt(v['device_peak_mb'], '.0f')} | {_fmt(v['check_rel_dW_of_update'], '.1e')} |"
                )
            L += [""] + [f"* {k}: {v:.2f}x" for k, v in p["ratios"].items()]
            best = rep["derived"].get(f"{n}_predcode_vs_best_peer")
            L += [
                f"* the faster predcode form / the fastest of PCX and ngc-learn: {_fmt(best)}x (target >= 1.5x)",
                "",
            ]
    rows = [v for v in VARIANTS if ok(f"settle_{v}")]
    if rows:
        L += [
            "## Settle-loop variants (XLA flags, no new code)",
            "",
            f"Training step at batch {f[f'settle_{rows[0]}']['batch']}, K = {f[f'settle_{rows[0]}']['K']}; the settle "
            "checked against the float64 NumPy reference "
            f"(tests/gncn_reference64.py, tolerance {SETTLE_RTOL:g} relative).",
            "",
            "| variant | flags / env | step ms | vs default | XLA compile s | settle rel. err | within tol. "
            "| params vs default | kernels per settle step |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for v in rows:
            s = f[f"settle_{v}"]
            fl = " ".join([s["variant_flags"], *(f"{k}={x}" for k, x in s["variant_env"].items())]).strip() or "-"
            L.append(
                f"| {v} | `{fl}` | {1e3 * s['step_s']:.2f} | {_fmt(s.get('speedup_vs_default'))} | "
                f"{s['xla_compile_s']:.2f} | {s['settle_max_rel_err']:.1e} | {_fmt(s['settle_within_tolerance'])} | "
                f"{_fmt(s.get('params_rel_diff_vs_default'), '.1e')} | "
                f"{', '.join(str(b['launch_like']) for b in s['hlo']['while_bodies']) or '-'} |"
            )
        L.append("")
    L += [
        "## Provenance of every figure",
        "",
        "| figure | status | command | commit | date | device |",
        "|---|---|---|---|---|---|",
    ]
    for n, v in f.items():
        cmd = v.get("command", "").replace("|", "\\|")
        L.append(
            f"| {n} | {v.get('status')}{' (dry run)' if v.get('dry_run') else ''} | `{cmd}` | {v.get('commit')} | "
            f"{v.get('date')} | {v.get('device')} |"
        )
    failed = [n for n, v in f.items() if v.get("status") != "ok"]
    if failed:
        L += ["", "Not measured: " + ", ".join(f"{n} ({f[n].get('status')})" for n in failed) + "; logs in gpu.json."]
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("peak")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, default=8192)
    s.add_argument("--repeats", type=int, default=5)
    s = sub.add_parser("epoch")
    s.add_argument("--out", required=True)
    s.add_argument("--batch", type=int, default=200)
    s.add_argument("--K", type=int, default=50)
    s.add_argument("--steps", type=int, default=300, help="steps an epoch (60,000 MNIST images / batch 200)")
    s.add_argument("--epochs", type=int, default=2, help="timed epochs (median reported)")
    s = sub.add_parser("trials")
    s.add_argument("--out", required=True)
    s.add_argument("--batch", type=int, default=200)
    s.add_argument("--K", type=int, default=50)
    s.add_argument("--trials", type=int, nargs="+", default=[1, 2, 4, 8])
    s.add_argument("--reps", type=int, default=10)
    s = sub.add_parser("settle")
    s.add_argument("--out", required=True)
    s.add_argument("--name", required=True, choices=list(VARIANTS))
    s.add_argument("--batch", type=int, default=200)
    s.add_argument("--K", type=int, default=50)
    s.add_argument("--reps", type=int, default=20)
    sub.add_parser("variants")
    s = sub.add_parser("failed")
    s.add_argument("--out", required=True)
    s.add_argument("--figure", required=True)
    s.add_argument("--status", required=True)
    s.add_argument("--rc", type=int, default=None)
    s.add_argument("--log", default=None)
    s.add_argument("--command", default=None)
    s = sub.add_parser("report")
    s.add_argument("--work", required=True)
    s.add_argument("--json", required=True)
    s.add_argument("--md", required=True)
    s.add_argument("--notes", default=None, help="a file of lines gpu.sh noted (installs, peers found)")
    a = ap.parse_args(argv)
    fn = globals()[f"cmd_{a.cmd}"]
    if a.cmd in ("failed", "report", "variants"):
        fn(a)
        return
    from predcode.threads import lapack_threads

    with lapack_threads():
        fn(a)


if __name__ == "__main__":
    main()
