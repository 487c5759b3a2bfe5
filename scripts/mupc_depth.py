"""Depth: test accuracy of residual PC MLPs on MNIST with and without muPC (results/mupc.md).

Trains ``configs/pc/mnist_mupc.toml`` (width 512, ReLU, no biases, standardized pixels, T = 8 state
steps of gradient descent, Adam lr 0.1: the defaults of JPC's muPC paper script) at each depth,
once with ``network.param = "mupc"`` and once with ``"standard"`` (the same residual network, Dense
default init, no multipliers), by ``predcode fit``, and appends each run's test accuracy (forward
pass), best validation accuracy, time and provenance to ``--json``. One run per call keeps each
under the 20-minute budget:

    nice -n 10 .venv/bin/python scripts/mupc_depth.py --depth 8 --param mupc --epochs 1 --json results/mupc.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", type=int, required=True, help="weight layers (depth - 1 hidden nodes)")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--param", choices=("mupc", "standard"), required=True)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--T", type=int, default=8, help="inference steps per batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=None, help="Adam's learning rate (default: the config's 0.1)")
    ap.add_argument(
        "--schedule", default=None, help="the weights' learning-rate schedule (default: the config's constant)"
    )
    ap.add_argument("--n-train", type=int, default=None, help="training images (default: all 55,000)")
    ap.add_argument(
        "--normalize",
        choices=("none", "symmetric", "standardize"),
        default="standardize",
        help="data.normalize (default standardize: JPC's unit-variance pixels, the config's)",
    )
    ap.add_argument("--out", default=None, help="run folder (default /tmp/mupc_<param>_<depth>)")
    ap.add_argument("--json", required=True, help="results file; the run is appended to its list")
    args = ap.parse_args()

    dims = [784] + [args.width] * (args.depth - 1) + [10]
    tag = f"{args.param}_{args.depth}_w{args.width}_{args.lr}_{args.n_train}_{args.normalize}_e{args.epochs}"
    tag += f"_{args.schedule}" if args.schedule else ""
    out = args.out or f"/tmp/mupc_{tag}"
    sets = {
        "network.dims": json.dumps(dims).replace(" ", ""),
        "network.param": args.param,
        "inference.T": str(args.T),
        "train.epochs": str(args.epochs),
        "train.seed": str(args.seed),
        "data.normalize": args.normalize,
        "out_dir": out,
    }
    if args.lr is not None:
        sets["optimizer.learning_rate"] = str(args.lr)
    if args.schedule is not None:
        sets["optimizer.schedule"] = args.schedule
    if args.n_train is not None:
        sets["data.n_train"] = str(args.n_train)
    cli = [sys.executable, "-c", "from predcode.cli import app; app()"]
    command = [*cli, "fit", "--config", str(ROOT / "configs/pc/mnist_mupc.toml")]
    command += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")] + ["--quiet"]
    start = time.time()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.time() - start
    record: dict = dict(depth=args.depth, width=args.width, param=args.param, epochs=args.epochs, T=args.T)
    record.update(lr=0.1 if args.lr is None else args.lr, n_train=args.n_train or 55000, normalize=args.normalize)
    record["schedule"] = args.schedule or "constant"
    record["command"] = "predcode fit --config configs/pc/mnist_mupc.toml"
    record["command"] += " " + " ".join(f"--set {k}={v}" for k, v in sets.items() if k != "out_dir")
    record["wall_seconds"] = seconds
    record["returncode"] = proc.returncode
    summary_path = Path(out) / "summary.json"
    if proc.returncode == 0 and summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        trial = summary["trials"][0]
        record.update(
            test_accuracy=trial["test_accuracy_forward"],
            best_val_accuracy=trial["best_val_score"],
            train_seconds=trial["train_seconds"],
            commit=summary["commit"],
            date=summary["date"],
            machine=summary["machine"],
            jax_version=summary["jax_version"],
        )
    else:
        record["error"] = (proc.stdout + proc.stderr)[-2000:] or f"no {summary_path} written"
    print(json.dumps(record, indent=1), flush=True)
    path = Path(args.json)
    runs = json.loads(path.read_text()) if path.is_file() else []
    runs.append(record)
    path.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
