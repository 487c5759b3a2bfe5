"""Linear probe of a museum run's settled phi(z3) trained on *every* training image of its split.

`predcode analyze` fits its probe (and the GMM prior) on a class-balanced sample of 18,000
training latents (`--n-latents`); the paper does not say how many it used. This script settles
all training images of the run's split and all test images with the best model and reports the
same probe (standardized latents, L2 logistic regression, C = 1) and 5-NN, to measure how much the
probe error depends on that choice.

Usage: .venv/bin/python scripts/museum_probe_all.py RUN [RUN ...] [--json OUT]
"""

import argparse
import json
import time

from predcode.data import load_binarized
from predcode.experiments.analyze import load_run, training_pool
from predcode.experiments.atomic import write_json
from predcode.experiments.density import extract_latents
from predcode.experiments.probes import knn_probe, linear_probe
from predcode.experiments.provenance import provenance

ap = argparse.ArgumentParser()
ap.add_argument("runs", nargs="+")
ap.add_argument("--json", default=None)
args = ap.parse_args()
out = {"provenance": provenance(), "runs": {}}
for run in args.runs:
    t0 = time.time()
    loaded = load_run(run)
    x_train, y_train, _, note = training_pool(loaded.config)
    x_test, y_test = load_binarized(loaded.config.data.dataset, "test")
    z_train = extract_latents(loaded.model, loaded.params, x_train, batch_size=500)
    z_test = extract_latents(loaded.model, loaded.params, x_test, batch_size=500)
    probe = linear_probe(z_train, y_train, z_test, y_test)
    knn = knn_probe(z_train, y_train, z_test, y_test)
    out["runs"][run] = {
        "pool": note,
        "probe_error_pct": probe["error_pct"],
        "probe_converged": probe["converged"],
        "knn5_error_pct": knn["error_pct"],
        "n_train": len(z_train),
        "seconds": time.time() - t0,
    }
    print(json.dumps({run: out["runs"][run]}), flush=True)
if args.json:
    write_json(args.json, out)
