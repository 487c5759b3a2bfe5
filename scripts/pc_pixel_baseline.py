"""Baseline for results/pc_mnist: the same linear probe and 5-NN on raw pixels (same split and sample).

Usage: .venv/bin/python scripts/pc_pixel_baseline.py runs/pc/mnist_generative [N_PER_CLASS]
(default: every training image, what `predcode analyze` uses without --n-latents)
"""

import json
import sys
from pathlib import Path

import numpy as np

from predcode.experiments.config import parse_toml
from predcode.experiments.pc_analyze import balanced_indices
from predcode.experiments.pc_fit import load_pc_data
from predcode.experiments.probes import knn_probe, linear_probe

cfg = parse_toml(Path(sys.argv[1], "config.toml").read_text())
d = load_pc_data(cfg)
per = int(sys.argv[2]) if len(sys.argv) > 2 else None
idx = np.arange(len(d.y_train)) if per is None else balanced_indices(d.y_train, per, seed=0)
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
