"""Linear probe of analysed museum runs with its regularisation C chosen on held-out training latents.

    python scripts/probe_c_sweep.py RUN [RUN ...] [--json OUT]

`predcode analyze` fits its probe with sklearn's default C = 1 (issue 5; the paper does not say
which it used). For each RUN this script takes the analysis's 18,000 training latents and labels
(``analysis0/latents.npy``, ``latent_labels.npy``), settles the test images with the best model,
picks C from a grid by the error on a held-out fifth of the training latents, refits on all of them
with that C and reports the test error. The test error at every C is listed too, for the record;
only the held-out choice is a fair figure.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from predcode.data import load_binarized
from predcode.experiments.analyze import load_run
from predcode.experiments.atomic import write_json
from predcode.experiments.density import extract_latents
from predcode.experiments.probes import linear_probe
from predcode.experiments.provenance import provenance

GRID = (0.001, 0.01, 0.1, 1.0, 10.0)

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("runs", nargs="+")
ap.add_argument("--json", default=None)
args = ap.parse_args()
out: dict = {"provenance": provenance(), "grid": GRID, "runs": {}}
for run in args.runs:
    t0 = time.time()
    analysis = Path(run) / "analysis0"
    z, y = np.load(analysis / "latents.npy"), np.load(analysis / "latent_labels.npy")
    loaded = load_run(run)
    x_test, y_test = load_binarized(loaded.config.data.dataset, "test")
    z_test = extract_latents(loaded.model, loaded.params, x_test, batch_size=500)
    order = np.random.default_rng(0).permutation(len(z))
    held, fit = order[: len(z) // 5], order[len(z) // 5 :]
    held_err = {c: linear_probe(z[fit], y[fit], z[held], y[held], C=c)["error_pct"] for c in GRID}
    best_c = min(GRID, key=lambda c: (held_err[c], -c))  # ties: the weaker regularisation
    test_err = {c: linear_probe(z, y, z_test, y_test, C=c)["error_pct"] for c in GRID}
    out["runs"][run] = {
        "n_train": len(z),
        "held_out_error_pct": {str(c): e for c, e in held_err.items()},
        "chosen_C": best_c,
        "test_error_pct_at_chosen_C": test_err[best_c],
        "test_error_pct_at_C_1": test_err[1.0],
        "test_error_pct_every_C": {str(c): e for c, e in test_err.items()},
        "seconds": time.time() - t0,
    }
    print(run, out["runs"][run], flush=True)
if args.json:
    write_json(args.json, out)
