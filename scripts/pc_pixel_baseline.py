"""Baseline for results/pc_mnist: the same linear probe and 5-NN on raw pixels (same split and sample).

Usage: .venv/bin/python scripts/pc_pixel_baseline.py runs/pc/mnist_generative
"""

import json
import sys
from pathlib import Path

from predcode.experiments.pc_analyze import balanced_indices
from predcode.experiments.pc_config import parse_pc_toml
from predcode.experiments.pc_fit import load_pc_data
from predcode.experiments.probes import knn_probe, linear_probe

cfg = parse_pc_toml(Path(sys.argv[1], "config.toml").read_text())
d = load_pc_data(cfg)
idx = balanced_indices(d.y_train, 1000, seed=0)  # what `predcode analyze --n-latents 10000` samples
lp = linear_probe(d.x_train[idx], d.y_train[idx], d.x_test, d.y_test)
kn = knn_probe(d.x_train[idx], d.y_train[idx], d.x_test, d.y_test)
print(
    json.dumps(
        {
            "pixels_linear_probe_accuracy_pct": 100 - lp["error_pct"],
            "pixels_5nn_accuracy_pct": 100 - kn["error_pct"],
            "n_train": len(idx),
        }
    )
)
