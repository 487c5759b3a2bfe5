"""Summarise the runs of ``scripts/ablation_sweep.sh``: validation BCE by epoch for each variant.

    python scripts/ablation_summary.py RUNS_DIR [NAME ...]

Reads ``RUNS_DIR/NAME/metrics.csv`` (every run folder in RUNS_DIR when no NAME is given) and writes
``RUNS_DIR/summary.json`` and ``RUNS_DIR/summary.md`` (atomically): for each variant the epochs it
finished, its best validation BCE and the epoch of it, the last one, the change from the best to
the last (a positive drift is the rising BCE of issue 5), and the seconds an epoch took.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from predcode.experiments.atomic import write_text


def read_run(folder: Path) -> dict | None:
    """The variant's curve from its metrics.csv (trial 0), or None if it finished no epoch."""
    path = folder / "metrics.csv"
    if not path.is_file():
        return None
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r["trial"] == "0"]
    if len(rows) < 2:  # epoch 0 is the untrained model
        return None
    val = [float(r["val_bce"]) for r in rows]
    train = [float(r["train_bce"]) for r in rows]
    best = min(range(1, len(val)), key=val.__getitem__)
    return {
        "epochs": len(rows) - 1,
        "val_bce": val,
        "train_bce": train,
        "best_epoch": best,
        "best_val_bce": val[best],
        "last_val_bce": val[-1],
        "drift_after_best": val[-1] - val[best],
        "seconds_per_epoch": sum(float(r["seconds"]) for r in rows[1:]) / (len(rows) - 1),
    }


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    runs = Path(argv[0])
    names = argv[1:] or sorted(p.name for p in runs.iterdir() if (p / "metrics.csv").is_file())
    summary = {name: read_run(runs / name) for name in names}
    write_text(runs / "summary.json", json.dumps(summary, indent=1) + "\n")
    lines = [
        "| variant | epochs | best val BCE (epoch) | last val BCE | drift after best | val BCE epochs 1..5 | s/epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in summary.items():
        if r is None:
            lines.append(f"| {name} | 0 | - | - | - | - | - |")
            continue
        first = ", ".join(f"{v:.2f}" for v in r["val_bce"][1:6])
        lines.append(
            f"| {name} | {r['epochs']} | {r['best_val_bce']:.2f} ({r['best_epoch']}) | {r['last_val_bce']:.2f} | "
            f"{r['drift_after_best']:+.2f} | {first} | {r['seconds_per_epoch']:.1f} |"
        )
    write_text(runs / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
