"""Compare the importance-sampled and the naive log p(x) on the first N test images of a trained run.

    python scripts/is_vs_naive.py RUN_DIR N [--is-samples 100] [--naive-samples 5000]

Uses ``RUN_DIR/best0`` and the prior ``RUN_DIR/analysis0/prior.npz`` written by ``predcode analyze``.
Prints both means, the IS effective sample size, and the per-image differences of the first 10.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from predcode.data import load_binarized
from predcode.experiments import density
from predcode.experiments.analyze import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("n", type=int)
    ap.add_argument("--is-samples", type=int, default=100)
    ap.add_argument("--naive-samples", type=int, default=5000)
    args = ap.parse_args()
    run = load_run(args.run, 0)
    prior = density.MixturePrior.load(f"{args.run}/analysis0/prior.npz")
    x, _ = load_binarized(run.config.data.dataset, "test")
    x = x[: args.n]
    latents = density.settle_batches(run.model, run.params, x, batch_size=100).latents
    t = time.time()
    mc = density.mc_log_likelihood(run.model, run.params, prior, x, n_samples=args.naive_samples, batch_size=100)
    print(f"naive ({args.naive_samples} samples): mean {mc.summary()['mean']:.2f}  ({time.time() - t:.0f} s)")
    t = time.time()
    imp = density.is_log_likelihood(run.model, run.params, prior, x, latents, n_samples=args.is_samples, batch_size=100)
    s = imp.summary()
    took = time.time() - t
    print(f"IS ({args.is_samples} samples): mean {s['mean']:.2f}, mean ESS {s['mean_ess']:.1f}  ({took:.0f} s)")
    print("per image, naive - IS:", np.round(mc.log_px[:10] - imp.log_px[:10], 1))


if __name__ == "__main__":
    main()
