"""# Walkthrough 1: train GNCN-PDH on MNIST, estimate log p(x), draw samples

This reproduces ngc-learn's Walkthrough 1 end to end with predcode's Python API, in the three steps
the walkthrough takes:

1. **fit**: train GNCN-PDH (Ororbia & Kifer 2022) on binarized MNIST with the walkthrough's
   settings (`configs/mnist/gncn_pdh.toml`: batch 512, up to 100 epochs, early stopping after 10
   epochs without a better validation BCE). The run folder gets the per-epoch curves, the best
   model and `metrics.csv` (the same as `predcode fit --config configs/mnist/gncn_pdh.toml`).
2. **analyze**: settle a class-balanced sample of training images, fit the Gaussian-mixture prior on
   the top-layer latents `phi(z3)`, and estimate the test-set `log p(x)` by Monte Carlo; test BCE,
   masked MSE and a linear probe on the latents come with it (`predcode analyze --run ...`).
3. **samples**: ancestral samples from the fitted prior through the model's top-down pass
   (`predcode sample --run ...`).

Run it from the top of the checkout (the MNIST files are found through `PREDCODE_DATA` or the
user cache; see Getting started):

```
python examples/walkthrough1.py --out runs/walkthrough1            # the full walkthrough (about an hour on 2 cores)
python examples/walkthrough1.py --out /tmp/w1 --reduced            # 300 images, 1 epoch: a smoke test in seconds
```

The full run of this recipe (predcode fit with the walkthrough config, then predcode analyze) gave
a best validation BCE of 56.12 nats/image and a naive Monte Carlo log p(x) of -112.99 nats on the
MNIST test set (`results/mnist_gncn_pdh_walkthrough/` in the repository has the provenance).
Its training curves and 100 samples from the prior:

![training curves](../img/walkthrough1/curves.png)

![samples](../img/walkthrough1/samples.png)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from predcode.experiments.analyze import analyze, sample
from predcode.experiments.config import load_config, with_overrides
from predcode.experiments.fit import fit
from predcode.experiments.provenance import provenance

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "mnist" / "gncn_pdh.toml"

# The reduced setting: enough to run every step of the walkthrough in seconds, not to learn much.
REDUCED_FIT = {
    "data.n_train": 300,
    "data.n_val": 100,
    "train.epochs": 1,
    "train.batch_size": 100,
    "train.eval_batch_size": 100,
}
REDUCED_ANALYSIS = {
    "n_latents": 200,
    "n_components": 3,
    "n_samples": 50,
    "n_is_samples": 0,
    "n_test": 100,
    "batch_size": 100,
}


def main(out: Path, *, reduced: bool = False, config: Path = CONFIG) -> dict:
    """Fit, analyze and sample into ``out``; return the key figures (also written to ``walkthrough1.json``)."""
    t0 = time.perf_counter()
    cfg = load_config(config)
    if reduced:
        cfg = with_overrides(cfg, **REDUCED_FIT)

    # 1. fit: the best model by validation BCE goes to out/best0.npz + .json
    summary = fit(
        cfg,
        out,
        force=True,
        on_epoch=lambda trial, r: print(f"epoch {r.epoch}: val BCE {r.val_bce:.2f}, ToD {r.val_tod:.2f}"),
    )
    print(f"best validation BCE {summary['best_val_bce_mean']:.2f}")

    # 2. analyze: GMM prior on phi(z3), log p(x) on the test set, probes; into out/analysis0/
    report = analyze(out, **(REDUCED_ANALYSIS if reduced else {}), on_stage=print)
    mc = report["log_px_mc"]
    print(
        f"test BCE {report['test_bce']:.2f}, log p(x) {mc['mean']:.2f} +- {mc['mc_se_of_mean']:.2f} "
        f"(naive Monte Carlo, S = {mc['n_samples']})"
    )

    # 3. samples from the fitted prior
    drawn = sample(out, n=16 if reduced else 64, out=out / "samples.png")
    print(f"wrote {drawn['path']}")

    figures = {
        "best_val_bce": summary["best_val_bce_mean"],
        "test_bce": report["test_bce"],
        "log_px_mc": mc["mean"],
        "linear_probe_error_pct": report["linear_probe"]["error_pct"],
        "samples": drawn["path"],
        "analysis": report["out"],
        "reduced": reduced,
        "seconds": time.perf_counter() - t0,
        **provenance(),
    }
    (out / "walkthrough1.json").write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0].lstrip("# "))
    parser.add_argument("--out", type=Path, default=Path("runs/walkthrough1"), help="run folder")
    parser.add_argument("--reduced", action="store_true", help="300 images, 1 epoch, a small analysis")
    parser.add_argument("--config", type=Path, default=CONFIG, help="fit config (default: the walkthrough's)")
    args = parser.parse_args()
    main(args.out, reduced=args.reduced, config=args.config)
