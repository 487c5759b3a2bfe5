"""Write the tutorial notebooks of docs/notebooks/ from the cells below (the reviewable source).

```
python scripts/make_notebooks.py             # write the three .ipynb files, without outputs
python scripts/make_notebooks.py --execute   # and run them (their default settings), keeping the outputs
```

Each notebook's first code cell is its parameter cell: with the environment variable
``PREDCODE_NOTEBOOK_FAST=1`` it picks reduced settings (what ``tests/test_notebooks.py`` runs, in
seconds); without it, the settings the docs site shows. The last code cell of each prints one line
``SUMMARY {json}`` with the figures the test checks. The committed notebooks hold the outputs of
``--execute``, so the docs site (mkdocs-jupyter, no execution at build time) shows them; the test
checks that their cells are the ones written here.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "docs" / "notebooks"

PARAMETERS = """\
import os

# PREDCODE_NOTEBOOK_FAST=1: the reduced settings the test suite runs (seconds, not a result).
FAST = os.environ.get("PREDCODE_NOTEBOOK_FAST", "0") not in ("", "0")
"""

FIVE_MINUTES = [
    (
        "md",
        """\
# Predictive coding in five minutes

A predictive-coding (PC) network is a stack of value nodes. Each node predicts the node below it;
the mismatch is an *error*, and the network's **energy** is the sum of its errors' negative
log-likelihoods. Two things happen on two time scales:

1. **settling** (inference): with some nodes clamped to data, the free nodes' states move down the
   energy gradient until the errors balance;
2. **learning**: once settled, every weight takes a step down the same energy, using only the
   errors and activities at its two ends (a local rule).

This notebook builds the supervised network of Whittington & Bogacz (2017), image clamped at the
root `x`, label clamped at the leaf `y`, watches one settle lower the energy, then trains it on
MNIST and scores it with a plain forward pass.""",
    ),
    (
        "code",
        PARAMETERS
        + """\
N_TRAIN, N_TEST, EPOCHS, BATCH = (500, 500, 1, 50) if FAST else (10000, 2000, 3, 64)
T = 20  # inference steps per batch
SEED = 0""",
    ),
    (
        "code",
        """\
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from predcode.data import flatten, load, to_float
from predcode.learning.pc import PCTrainer
from predcode.models.network import PCNetwork

(x_train, y_train), (x_test, y_test) = load("mnist", "train"), load("mnist", "test")
x_train, y_train = flatten(to_float(x_train[:N_TRAIN])), y_train[:N_TRAIN].astype(np.int32)
x_test, y_test = flatten(to_float(x_test[:N_TEST])), y_test[:N_TEST].astype(np.int32)
print(x_train.shape, x_test.shape)""",
    ),
    (
        "md",
        """\
## The network

`PCNetwork.chain` stacks dense transforms `x (784) -> h (128, tanh) -> y (10)`. Every node with a
parent has a unit-variance Gaussian error cell; the root `x` has none (it is always clamped). The
trainer runs `T` steps of SGD on the free states, then one Adam step on the weights.""",
    ),
    (
        "code",
        """\
net = PCNetwork.chain([784, 128, 10], names=["x", "h", "y"], activation="tanh")
params = net.init(jax.random.key(SEED))
trainer = PCTrainer(net, optimizer_x=optax.sgd(0.1), optimizer_p=optax.adam(1e-3), T=T)
opt_state = trainer.init(params)
net""",
    ),
    (
        "md",
        """\
## Settling lowers the energy

Clamp 100 test images and their labels; only `h` is free. The Gaussian cells' energy includes the
normaliser `0.5 n log(2 pi)` for each of the `n` predicted units, a constant that no settling can
change; the plot shows the energy without it, the sum of the squared errors over two.""",
    ),
    (
        "code",
        """\
clamps = {"x": jnp.asarray(x_test[:100]), "y": jax.nn.one_hot(y_test[:100], 10)}
energy = np.asarray(trainer.infer(params, clamps).energy) / 100  # per image
n_predicted = sum(node.dim for node in net.nodes if node.inputs)
normaliser = 0.5 * n_predicted * np.log(2 * np.pi)
print(f"energy per image {energy[0]:.3f} -> {energy[-1]:.3f} in {T} steps "
      f"(normaliser {normaliser:.3f} for n = {n_predicted} predicted units)")

fig, ax = plt.subplots(figsize=(5.5, 3.4))
ax.plot(energy - normaliser, "o-", ms=3)
ax.set(xlabel="inference step", ylabel="energy - normaliser (nats/image)",
       title="one settle, image and label clamped (untrained weights)")
ax.grid(alpha=0.3)
plt.show()""",
    ),
    (
        "md",
        """\
## Learning

Each training step settles a batch, then moves the weights down the settled energy. At test time
only the image is clamped: a forward sweep is already the fixed point of inference (every error
zero), so the label node's state after one sweep is the network's prediction.""",
    ),
    (
        "code",
        """\
predict = jax.jit(lambda p, x: net.forward(p, {"x": x})["y"])


def test_accuracy(p):
    return float(np.mean(np.argmax(np.asarray(predict(p, jnp.asarray(x_test))), axis=1) == y_test))


history = [{"epoch": 0, "test_accuracy": test_accuracy(params), "energy": float(energy[-1])}]
rng = np.random.default_rng(SEED)
for epoch in range(1, EPOCHS + 1):
    order, energies = rng.permutation(N_TRAIN), []
    for i in range(0, N_TRAIN - BATCH + 1, BATCH):
        rows = order[i : i + BATCH]
        batch = {"x": jnp.asarray(x_train[rows]), "y": jax.nn.one_hot(y_train[rows], 10)}
        params, opt_state, metrics = trainer.step(params, opt_state, batch)
        energies.append(float(metrics.energy))
    history.append({"epoch": epoch, "test_accuracy": test_accuracy(params), "energy": float(np.mean(energies))})
    print(f"epoch {epoch}: settled training energy {history[-1]['energy']:.3f} nats/image, "
          f"test accuracy {100 * history[-1]['test_accuracy']:.1f}%")""",
    ),
    (
        "code",
        """\
after = np.asarray(trainer.infer(params, clamps).energy) / 100
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
axes[0].plot(energy - normaliser, "o-", ms=3, label="before training")
axes[0].plot(after - normaliser, "s-", ms=3, label=f"after {EPOCHS} epoch(s)")
axes[0].set(xlabel="inference step", ylabel="energy - normaliser (nats/image)",
            title="settling the same 100 test images")
axes[0].legend()
axes[1].plot([h["epoch"] for h in history], [100 * h["test_accuracy"] for h in history], "o-")
axes[1].set(xlabel="epoch", ylabel="test accuracy (%)", title=f"forward pass, {N_TEST} test images",
            xticks=[h["epoch"] for h in history])
for ax in axes:
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()""",
    ),
    (
        "code",
        """\
import json

summary = {
    "energy_first": float(energy[0]), "energy_last": float(energy[-1]),
    "trained_energy_first": float(after[0]), "trained_energy_last": float(after[-1]),
    "normaliser": float(normaliser),
    "accuracy_before": history[0]["test_accuracy"], "accuracy_after": history[-1]["test_accuracy"],
    "fast": FAST,
}
print("SUMMARY " + json.dumps(summary))""",
    ),
]

GNCN = [
    (
        "md",
        """\
# The GNCN walkthrough: train GNCN-PDH, draw samples, estimate log p(x)

GNCN-PDH (Ororbia & Kifer 2022) is the museum's generative model: three latent layers that
predict the image and each other (with skip predictions and lateral competition), settled for `K`
steps per image. As in ngc-learn's Walkthrough 1 this notebook

1. trains it on binarized MNIST (`predcode.experiments.fit.fit`, the function behind
   `predcode fit`, into a run folder);
2. settles training images and fits a Gaussian mixture to their top-layer latents `phi(z3)`: the
   prior from which the model samples;
3. estimates the test-set marginal log-likelihood `log p(x)` by naive Monte Carlo from that prior
   (`predcode.experiments.density`).

The settings are far below the walkthrough's (see `examples/walkthrough1.py` for the full run,
best validation BCE 56.12 nats and naive Monte Carlo log p(x) -112.99 nats).""",
    ),
    (
        "code",
        PARAMETERS
        + """\
if FAST:
    SETTINGS = {"data.n_train": 300, "data.n_val": 100, "train.epochs": 1, "train.batch_size": 100,
                "train.eval_batch_size": 100, "model.z_dims": [36, 36, 36], "model.K": 5}
    N_LATENTS, N_COMPONENTS, N_TEST, N_SAMPLES = 200, 3, 100, 100
else:
    SETTINGS = {"data.n_train": 5000, "data.n_val": 1000, "train.epochs": 5, "train.batch_size": 200,
                "train.eval_batch_size": 500}
    N_LATENTS, N_COMPONENTS, N_TEST, N_SAMPLES = 2000, 10, 500, 1000""",
    ),
    (
        "code",
        """\
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from predcode.experiments.config import load_config, with_overrides
from predcode.experiments.fit import fit

cfg = with_overrides(load_config("mnist/gncn_pdh"), **SETTINGS)  # the walkthrough's config, by name
run = Path(tempfile.mkdtemp()) / "pdh"
val_bce = {}


def on_epoch(trial, r):
    val_bce[r.epoch] = r.val_bce
    print(f"epoch {r.epoch}: validation BCE {r.val_bce:.2f} nats/image, ToD {r.val_tod:.2f}")


summary = fit(cfg, run, on_epoch=on_epoch)
print(f"best validation BCE {summary['best_val_bce_mean']:.2f}")
print("run folder:", sorted(p.name for p in run.iterdir()))""",
    ),
    (
        "md",
        """\
## The training curves

`curves.png` of the run folder, drawn by `predcode.experiments.plots.training_curves`: the
untrained model (epoch 0) is left off the axes (its values are in the legend), the best epoch,
whose model is `best0`, is marked.""",
    ),
    (
        "code",
        """\
from IPython.display import Image

Image(filename=str(run / "curves.png"))""",
    ),
    (
        "md",
        """\
## The prior: a Gaussian mixture on settled latents

`load_run` rebuilds the model from the run folder's `config.toml` and `best0` checkpoint.
`settle_batches` settles images and returns, among others, the top layer's `phi(z3)`; `fit_prior`
fits scikit-learn's Gaussian mixture to them and `MixturePrior` keeps it as arrays (no pickle).""",
    ),
    (
        "code",
        """\
from predcode.data import load_binarized
from predcode.experiments.analyze import load_run
from predcode.experiments.density import MixturePrior, fit_prior, mc_log_likelihood, sample_images, settle_batches

loaded = load_run(run)
model, params = loaded.model, loaded.params
x_train = load_binarized("mnist", "train")[0][:N_LATENTS]
latents = settle_batches(model, params, x_train, batch_size=100).latents
prior = MixturePrior.from_sklearn(fit_prior(latents, n_components=N_COMPONENTS, seed=0))
print(f"{len(latents)} latents of dimension {prior.dim}; a {prior.n_components}-component mixture")""",
    ),
    (
        "code",
        """\
samples = sample_images(model, params, prior, 36, seed=0)  # Bernoulli means of the image, (36, 784)
fig, axes = plt.subplots(4, 9, figsize=(9, 4.2))
for ax, image in zip(axes.flat, samples):
    ax.imshow(image.reshape(28, 28), cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
fig.suptitle(f"GNCN-PDH: ancestral samples from the {prior.n_components}-component prior")
plt.show()
print(samples.shape)""",
    ),
    (
        "md",
        """\
## log p(x)

`p(x) = E_{s ~ prior}[prod_d Bernoulli(x_d; project(s)_d)]`; the naive Monte Carlo estimate
averages the likelihood over `S` prior samples (`log p(x) ~ logsumexp - log S`). It is a lower
bound in expectation and, on trained models, tens of nats below the importance-sampled estimate
that `predcode analyze` also reports.""",
    ),
    (
        "code",
        """\
x_test = load_binarized("mnist", "test")[0][:N_TEST]
estimate = mc_log_likelihood(model, params, prior, x_test, n_samples=N_SAMPLES, batch_size=100, seed=0)
stats = estimate.summary()
print(f"naive Monte Carlo log p(x) on {N_TEST} test images: {stats['mean']:.2f} nats "
      f"(+- {stats['mc_se_of_mean']:.2f}, S = {N_SAMPLES})")""",
    ),
    (
        "code",
        """\
import json

print("SUMMARY " + json.dumps({
    "best_val_bce": summary["best_val_bce_mean"], "untrained_val_bce": val_bce[0], "samples_shape": list(samples.shape),
    "samples_min": float(samples.min()), "samples_max": float(samples.max()),
    "log_px_mean": stats["mean"], "n_test": N_TEST, "latent_dim": prior.dim, "fast": FAST,
}))""",
    ),
]

CREDIT = [
    (
        "md",
        """\
# Credit assignment compared: backprop, FA, DFA and PC on one network

How does a hidden weight learn what it contributed to the output error? predcode's rules answer
in four ways, each an `init`/`update` pair that any optax optimizer follows
(`predcode.learning.rules`):

- **backprop**: the exact gradient, the output error carried back through the transposed weights;
- **feedback alignment** (FA, Lillicrap et al. 2016): a fixed random matrix in place of each
  transposed weight;
- **direct feedback alignment** (DFA, Nokland 2016): the output error sent straight to every
  hidden layer through fixed random matrices;
- **predictive coding** (PC, Whittington & Bogacz 2017): the hidden states settle with image and
  label clamped, and each weight learns from its local error.

The same MLP, the same initial weights and the same batches for each rule
(`predcode.experiments.credit.train_rule`); besides accuracy, the **angle** between each rule's
update and backprop's gradient, at the rule's own current weights.""",
    ),
    (
        "code",
        PARAMETERS
        + """\
if FAST:
    N_TRAIN, N_VAL, SIZES, EPOCHS, BATCH = 1000, 200, (784, 32, 10), 1, 25
else:
    N_TRAIN, N_VAL, SIZES, EPOCHS, BATCH = 10000, 2000, (784, 128, 128, 10), 3, 64
RULES = ("backprop", "fa", "dfa", "pc")""",
    ),
    (
        "code",
        """\
import matplotlib.pyplot as plt
import numpy as np

from predcode.experiments.credit import load_mnist, train_rule

data = load_mnist(n_val=N_VAL, seed=0, n_train=N_TRAIN)  # standardised pixels
results = {
    rule: train_rule(rule, data, sizes=SIZES, epochs=EPOCHS, batch_size=BATCH, seed=0,
                     angle_batch=min(500, N_TRAIN), log=lambda line: print(line[:110]))
    for rule in RULES
}""",
    ),
    (
        "md",
        """\
## The rule as a plug-in

Each of the four is one object; the same `make_trainer` builds the training step for any of them
(here one step of FA on a batch):""",
    ),
    (
        "code",
        """\
import jax
import optax

import predcode
from predcode.models.mlp import MLP

mlp = MLP(SIZES, activation="relu", loss="cross_entropy")
params = mlp.init(jax.random.key(0))
trainer = predcode.make_trainer(mlp, optax.adam(1e-3), rule=predcode.FeedbackAlignment(key=jax.random.key(1)))
print(type(trainer).__name__, "for", mlp.sizes)""",
    ),
    (
        "md",
        """\
## Accuracy and alignment

FA and DFA start near 90 degrees from the gradient (their feedback is random) and align as the
forward weights come to agree with it; PC's update stays close to backprop's.""",
    ),
    (
        "code",
        """\
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for rule, res in results.items():
    steps = [a["step"] for a in res["angles"]]
    hidden = [float(np.mean(a["degrees"][:-1])) for a in res["angles"]]  # the hidden layers' mean
    axes[0].plot(steps, hidden, "o-", ms=3, label=rule)
axes[0].set(xlabel="training step", ylabel="degrees", title="angle of the hidden layers' update to backprop's")
axes[0].set_ylim(0, 100)
axes[0].legend()
names = list(results)
axes[1].bar(names, [100 * results[r]["test_accuracy"] for r in names], color=[f"C{i}" for i in range(len(names))])
for i, r in enumerate(names):
    axes[1].text(i, 100 * results[r]["test_accuracy"] + 1, f"{100 * results[r]['test_accuracy']:.1f}%", ha="center")
axes[1].set(ylabel="test accuracy (%)", ylim=(0, 105), title=f"MLP {list(SIZES)}, {EPOCHS} epoch(s), {N_TRAIN} images")
for ax in axes:
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()""",
    ),
    (
        "code",
        """\
import json

print("SUMMARY " + json.dumps({
    "test_accuracy": {r: results[r]["test_accuracy"] for r in RULES},
    "final_angle": {r: float(np.mean(results[r]["angles"][-1]["degrees"][:-1])) for r in RULES},
    "fast": FAST,
}))""",
    ),
]

NOTEBOOKS = {
    "predictive_coding_in_five_minutes": FIVE_MINUTES,
    "gncn_walkthrough": GNCN,
    "credit_assignment_compared": CREDIT,
}


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """A notebook of markdown and code cells (the first code cell tagged ``parameters``)."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    tagged = False
    for kind, source in cells:
        if kind == "md":
            nb.cells.append(new_markdown_cell(source))
        else:
            cell = new_code_cell(source)
            if not tagged:
                cell.metadata["tags"] = ["parameters"]
                tagged = True
            nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"  # stable ids: regenerating changes no line that did not change
    return nb


def execute(nb: nbformat.NotebookNode, *, timeout: int = 1800) -> nbformat.NotebookNode:
    """Run ``nb`` top to bottom in a fresh python3 kernel (nbclient), keeping the outputs."""
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    return nb


def main() -> None:
    parser = argparse.ArgumentParser(description="Write (and run) the notebooks of docs/notebooks/.")
    parser.add_argument("--execute", action="store_true", help="run each notebook and keep its outputs")
    parser.add_argument("--only", default=None, help="one notebook's name")
    args = parser.parse_args()
    FOLDER.mkdir(parents=True, exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        if args.only and name != args.only:
            continue
        nb = build(cells)
        if args.execute:
            t0 = time.perf_counter()
            os.environ.pop("PREDCODE_NOTEBOOK_FAST", None)
            execute(nb)
            print(f"{name}: executed in {time.perf_counter() - t0:.0f} s")
        nbformat.write(nb, FOLDER / f"{name}.ipynb")
        print(f"wrote {FOLDER / f'{name}.ipynb'}")


if __name__ == "__main__":
    main()
