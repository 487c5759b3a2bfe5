"""Add the importance-sampled log p(x) to an existing ``predcode analyze`` output, reusing its prior.

    python scripts/add_is_estimate.py RUN_DIR [RUN_DIR ...] [--n-test N] [--n-is-samples 64]

For each run: loads ``best0`` and ``analysis0/prior.npz``, settles the test images, runs the
estimator ``predcode analyze`` uses (``predcode.experiments.analyze.importance_estimate``, the
stratified per-component importance sampler) and writes its summary into
``analysis0/report.json`` (``log_px_is``, ``settings.importance_sampling`` with this command, the
commit and the date) and its per-image arrays into ``analysis0/log_px.npz`` (``importance``,
``importance_se``, ``importance_ess``), both atomically. Refitting the 75-component prior is what
makes a full ``predcode analyze`` take most of an hour on 2 cores; this skips it. Prints the naive
and the importance-sampled means on the same images and the share of images where IS is higher.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from predcode.data import load_binarized
from predcode.experiments import density
from predcode.experiments.analyze import IS_SAMPLES, importance_estimate, importance_settings, load_run
from predcode.experiments.atomic import atomic_path, write_json
from predcode.experiments.provenance import git_commit


def add(run_dir: Path, n_test: int | None, n_is: int) -> None:
    run = load_run(run_dir, 0)
    out = run_dir / "analysis0"
    report = json.loads((out / "report.json").read_text())
    prior = density.MixturePrior.load(out / "prior.npz")
    x, _ = load_binarized(run.config.data.dataset, "test")
    n_report = report["log_px_mc"]["n_images"]
    n_test = n_report if n_test is None else n_test
    x = x[:n_test]
    seed = int(report["settings"]["seed"]) + 1
    latents = density.settle_batches(run.model, run.params, x, batch_size=100).latents
    t = time.time()
    imp = importance_estimate(run.model, run.params, prior, x, latents, n_is, seed)
    took = time.time() - t
    with np.load(out / "log_px.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    naive = arrays["mc"][:n_test]
    s = imp.summary()
    print(
        f"{run_dir}: naive {naive.mean():.2f}, importance-sampled {s['mean']:.2f} +- {s['mc_se_of_mean']:.3f} "
        f"(mean ESS {s['mean_ess']:.1f}), IS higher on {np.mean(imp.log_px > naive):.3f} of {n_test} images, "
        f"{took:.0f} s",
        flush=True,
    )
    if n_test != n_report:
        print(f"  not written: --n-test {n_test} differs from the report's {n_report} test images")
        return
    arrays.update(importance=imp.log_px, importance_se=imp.se, importance_ess=imp.ess)
    with atomic_path(out / "log_px.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, allow_pickle=False, **arrays)
    report["log_px_is"] = s
    report["settings"]["n_is_samples"] = n_is
    report["settings"]["importance_sampling"] = {
        **importance_settings(prior),
        "seed": seed,
        "added_by": shlex.join([Path(sys.executable).name, *sys.argv]),
        "added_at_commit": git_commit(),
        "added_on": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(took, 1),
    }
    write_json(out / "report.json", report)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--n-test", type=int, default=None, help="first N test images (default: the report's)")
    ap.add_argument("--n-is-samples", type=int, default=IS_SAMPLES)
    args = ap.parse_args()
    for run in args.runs:
        add(run, args.n_test, args.n_is_samples)


if __name__ == "__main__":
    main()
