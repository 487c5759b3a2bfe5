"""Time to quality of the settling solvers: validation BCE reached against training wall time.

Trains GNCN-PDH (784-360-360-360, legacy Adam lr 1e-3, batch 100) on the first ``--n-train``
binarized MNIST training images once per settling option, and records after every ``--eval-every``
batches the validation BCE (each option's own settle, as ``predcode fit`` reports it) against the
wall time spent in training steps (evaluations excluded). The options train *interleaved*, a few
batches each in turn, so that the load of a shared machine falls on all of them alike. At the end,
every option's final model is also evaluated with the museum settle (Euler, K = 50), so a faster
option cannot win by a settle that merely flatters its own BCE.

    nice -n 10 .venv/bin/python benchmarks/settling.py --json results/settling.json --plot results/settling.png

See benchmarks/README.md and results/settling.md.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import jax
import jax.numpy as jnp

from predcode.data import load_binarized, train_val_split
from predcode.experiments.provenance import provenance
from predcode.experiments.train import epoch_order
from predcode.learning.step import make_trainer, pad_batch
from predcode.models.gncn import GNCN, GNCNConfig

# name -> GNCNConfig overrides; the first is the reference (the museum default).
OPTIONS: dict[str, dict] = {
    "euler K=50 (museum)": dict(K=50),
    "euler K=20": dict(K=20),
    "heun K=10": dict(K=10, solver="heun"),
    "momentum 0.5 K=20": dict(K=20, solver="momentum", momentum=0.5),
    "nesterov 0.5 K=20": dict(K=20, solver="nesterov", momentum=0.5),
    "euler K=50 tol=0.05": dict(K=50, settle_tol=0.05),
}


def _val_bce(trainer, params, x_val, batch):
    total = 0.0
    for s in range(0, len(x_val), batch):
        xb, w = pad_batch(jnp.asarray(x_val[s : s + batch]), batch)
        total += float(trainer.evaluate(params, xb, w).bce) * min(batch, len(x_val) - s)
    return total / len(x_val)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-val", type=int, default=300)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=3, help="epochs of the reference (Euler K = 50)")
    ap.add_argument("--epochs-alt", type=int, default=4, help="epochs of every other option")
    ap.add_argument("--eval-every", type=int, default=10, help="batches between validations")
    ap.add_argument("--chunk", type=int, default=5, help="batches an option trains before the next one's turn")
    ap.add_argument("--seed", type=int, default=69)
    ap.add_argument("--only", nargs="*", default=None, help="option names to run (default: all)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--plot", default=None)
    ap.add_argument(
        "--replot",
        default=None,
        metavar="RESULTS_JSON",
        help="only add the FLOP counts to saved results (rewritten in place) and redraw --plot",
    )
    args = ap.parse_args()
    if args.replot:
        with open(args.replot) as f:
            out = json.load(f)
        out["flops_per_step"] = step_flops(out["batch"])
        with open(args.replot, "w") as f:
            json.dump(out, f, indent=1)
        plot(out, args.plot)
        return

    images, labels = load_binarized("mnist", "train")
    x_tr, _, x_val, _ = train_val_split(images, labels, args.n_val, seed=args.seed)
    x_tr = x_tr[: args.n_train]
    n_batches = -(-len(x_tr) // args.batch)
    names = [n for n in OPTIONS if args.only is None or n in args.only]
    base = GNCNConfig(kind="gncn_pdh")
    reference = make_trainer(GNCN(base))
    runs = {}
    for name in names:
        model = GNCN(replace(base, **OPTIONS[name]))
        trainer = make_trainer(model)
        params = model.init(jax.random.key(args.seed))  # the same initial weights for every option
        epochs = args.epochs if name == names[0] else args.epochs_alt
        settle = jax.jit(lambda p, x, model=model: model.settle(p, x).n_steps)
        xb, w = pad_batch(jnp.asarray(x_tr[: args.batch]), args.batch)
        jax.block_until_ready(trainer.step(params, trainer.init(params), xb, w))  # compile outside the clock
        runs[name] = dict(
            model=model,
            trainer=trainer,
            params=params,
            opt=trainer.init(params),
            settle=settle,
            total=epochs * n_batches,
            done=0,
            seconds=0.0,
            cpu_seconds=0.0,
            curve=[dict(images=0, seconds=0.0, cpu_seconds=0.0, val_bce=_val_bce(trainer, params, x_val, args.batch))],
            steps=[],
        )
        print(f"{name}: untrained val BCE {runs[name]['curve'][0]['val_bce']:.2f}", flush=True)

    while any(r["done"] < r["total"] for r in runs.values()):
        for name, r in runs.items():
            for _ in range(min(args.chunk, r["total"] - r["done"])):
                epoch, b = divmod(r["done"], n_batches)
                rows = epoch_order(len(x_tr), args.seed, epoch + 1)[b * args.batch : (b + 1) * args.batch]
                xb, w = pad_batch(jnp.asarray(x_tr[rows]), args.batch)
                start, cpu = time.perf_counter(), time.process_time()
                r["params"], r["opt"], _ = r["trainer"].step(r["params"], r["opt"], xb, w)
                jax.block_until_ready(r["params"])
                r["seconds"] += time.perf_counter() - start
                r["cpu_seconds"] += time.process_time() - cpu
                r["done"] += 1
                if r["done"] % args.eval_every == 0 or r["done"] == r["total"]:
                    r["steps"].append(int(r["settle"](r["params"], xb)))
                    point = dict(
                        images=r["done"] * args.batch,
                        seconds=r["seconds"],
                        cpu_seconds=r["cpu_seconds"],
                        val_bce=_val_bce(r["trainer"], r["params"], x_val, args.batch),
                        settle_steps=r["steps"][-1],
                    )
                    r["curve"].append(point)
                    print(f"{name}: {point}", flush=True)

    results = {}
    for name, r in runs.items():
        final_ref = _val_bce(reference, r["params"], x_val, args.batch)
        results[name] = dict(
            config=OPTIONS[name],
            curve=r["curve"],
            final_val_bce_museum_settle=final_ref,
            train_seconds=r["seconds"],
            train_cpu_seconds=r["cpu_seconds"],
            seconds_per_batch=r["seconds"] / r["done"],
            cpu_seconds_per_batch=r["cpu_seconds"] / r["done"],
        )
        print(
            f"{name}: final val BCE {r['curve'][-1]['val_bce']:.2f} (museum settle {final_ref:.2f}), "
            f"{r['seconds'] / r['done']:.3f} s/batch, {r['cpu_seconds'] / r['done']:.3f} CPU s/batch",
            flush=True,
        )
    out = dict(**provenance(), n_train=len(x_tr), n_val=len(x_val), batch=args.batch, seed=args.seed, options=results)
    out["flops_per_step"] = step_flops(args.batch)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.plot:
        plot(out, args.plot)


def step_flops(batch: int) -> dict:
    """FLOPs of one training step as XLA counts them (``cost_analysis``), per option and for Euler per K.

    Every option runs the same matrix products, at the same sizes, so FLOPs compare their costs
    independently of the machine's load. A tolerance-stopped settle is a while loop, whose body
    XLA counts once: its cost is taken as Euler's for the number of steps it ran.
    """
    xb, w = jnp.zeros((batch, 784), jnp.float32), jnp.ones(batch, jnp.float32)

    def flops(cfg):
        model = GNCN(cfg)
        trainer = make_trainer(model)
        params = model.init(jax.random.key(0))
        compiled = jax.jit(lambda p, o, x, w: trainer.step(p, o, x, w))
        cost = compiled.lower(params, trainer.init(params), xb, w).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return float(cost["flops"])

    base = GNCNConfig(kind="gncn_pdh")
    # XLA counts a scan's body once, whatever its length: cost = fixed + (K - 1) x body, with the
    # fixed part (first prediction, updates, Adam, constraints) from K = 1, where the scan is empty.
    fixed = flops(replace(base, K=1))
    out = {"euler_fixed": fixed, "euler_per_settle_step": flops(replace(base, K=2)) - fixed}
    for name, overrides in OPTIONS.items():
        if "settle_tol" not in overrides:
            cfg = replace(base, **overrides)
            body = flops(replace(cfg, K=2)) - fixed
            out[name] = fixed + (cfg.K - 1) * body
    return out


def _cumulative_flops(out: dict) -> None:
    """Add ``flops`` (cumulative training FLOPs) to every curve point."""
    fl = out["flops_per_step"]
    for name, r in out["options"].items():
        total, last = 0.0, 0
        for p in r["curve"]:
            batches = p["images"] // out["batch"] - last
            if name in fl:
                cost = fl[name]
            else:  # tolerance: Euler for the steps the settle ran (sampled at this point)
                cost = fl["euler_fixed"] + fl["euler_per_settle_step"] * (p.get("settle_steps", 1) - 1)
            total += batches * cost
            last = p["images"] // out["batch"]
            p["gflops"] = total / 1e9


def plot(out: dict, path: str) -> None:
    """Validation BCE against training wall time, one line per option; the reference's final BCE dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref_name = next(iter(out["options"]))
    panels = [
        ("seconds", "training wall time under load (s, evaluation excluded)"),
        ("cpu_seconds", "training CPU time of the process (s)"),
    ]
    if "flops_per_step" in out:
        _cumulative_flops(out)
        panels.insert(0, ("gflops", "training work (GFLOP, XLA cost analysis)"))
    ref = out["options"][ref_name]["curve"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), sharey=True)
    for ax, (key, label) in zip(axes, panels):
        for name, r in out["options"].items():
            c = r["curve"][1:]
            ax.plot(
                [p[key] for p in c],
                [p["val_bce"] for p in c],
                marker=".",
                label=name,
                lw=2.5 if name == ref_name else 1.2,
            )
        ax.axhline(ref[-1]["val_bce"], color="k", ls="--", lw=0.8)
        ax.axvline(ref[-1][key] / 2, color="k", ls=":", lw=0.8)
        ax.annotate(
            "Euler K=50 final BCE", (0, ref[-1]["val_bce"]), textcoords="offset points", xytext=(4, 4), fontsize=8
        )
        ax.annotate(
            "half its time",
            (ref[-1][key] / 2, ref[-1]["val_bce"]),
            textcoords="offset points",
            xytext=(4, 20),
            fontsize=8,
        )
        ax.set_xlabel(label)
    axes[0].set_ylabel("validation BCE (nats/image, own settle)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"GNCN-PDH, {out['n_train']} MNIST images, batch {out['batch']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    from predcode.threads import lapack_threads

    with lapack_threads():  # as measured: jaxlib's CPU LAPACK on one OpenBLAS thread (predcode/threads.py)
        main()
