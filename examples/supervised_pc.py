"""# Supervised PC: classify MNIST with a predictive-coding network clamped at both ends

Whittington & Bogacz (2017, *Neural Computation* 29:1229) showed that a predictive-coding network
with the **image clamped at the root and the label clamped at the leaf** learns like backprop: the
hidden states settle between the two clamps, the errors they carry approach backprop's deltas,
and each weight learns from the error below it times the activity above it. At test time only the
image is clamped; the free label node settles to the network's feedforward prediction (a forward
sweep is already the fixed point of inference, where every error is zero).

This example trains the chain `x (784) -> h1 (256, relu) -> h2 (256, relu) -> y (10)` built with
`PCNetwork.chain` and `PCTrainer` (T = 20 state steps of SGD 0.1, then one Adam step of the
weights, learning rate 3e-4 with cosine decay), and, for reference, the same architecture with
backprop on the same batches, from the same initial weights.

```
python examples/supervised_pc.py --out runs/supervised_pc               # 60,000 images, 3 epochs
python examples/supervised_pc.py --out /tmp/spc --reduced               # 2,000 images, 1 epoch
```

It writes `supervised_pc.json` (test accuracy of PC and backprop per epoch, the inference energy)
and `supervised_pc.png` (test accuracy per epoch for both, and one inference trace).

The full setting (seed 0, 2 CPU cores, 121 s) reached a test accuracy of 94.8, 95.5 and 95.6% with
PC after epochs 1 to 3, against 95.7, 96.7 and 96.7% with backprop. The learning rate matters:
with a constant 1e-3, PC's accuracy fell epoch after epoch (90.6, 83.7, 75.3%) while backprop's
rose. The energy in the trace is dominated by the Gaussian cells' normalizing constants; inference
removes the small part the errors contribute.

![supervised PC against backprop](../img/supervised_pc/supervised_pc.png)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax

from predcode.data import flatten, load, to_float
from predcode.experiments.provenance import provenance
from predcode.learning.pc import PCTrainer
from predcode.models.network import PCNetwork

# Adam's learning rate decays to 0 over the run (cosine). Measured on the full setting, seed 0, PC test accuracy by
# epoch: constant 1e-3: 90.6, 83.7, 75.3% (falling: presumably the weights grow until SGD 0.1 on the states
# overshoots); cosine from 1e-3: 93.6, 93.8, 93.8%; cosine from 3e-4: 94.8, 95.5, 95.6% (backprop 96.7%).
FULL = {"n_train": 60000, "n_test": 10000, "epochs": 3, "batch_size": 64, "T": 20, "learning_rate": 3e-4}
REDUCED = {"n_train": 2000, "n_test": 1000, "epochs": 1, "batch_size": 50, "T": 20, "learning_rate": 1e-3}
SIZES = (784, 256, 256, 10)


def mnist(n_train: int, n_test: int):
    """Pixels in [0, 1] and integer labels of the first ``n_train`` training and ``n_test`` test images."""
    (x_tr, y_tr), (x_te, y_te) = load("mnist", "train"), load("mnist", "test")
    return (
        flatten(to_float(x_tr[:n_train])),
        y_tr[:n_train].astype(np.int32),
        flatten(to_float(x_te[:n_test])),
        y_te[:n_test].astype(np.int32),
    )


def accuracy(predict, params, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` whose arg-max prediction equals its label."""
    hits = sum(
        int(jnp.sum(jnp.argmax(predict(params, x[i : i + 1000]), -1) == y[i : i + 1000]))
        for i in range(0, len(x), 1000)
    )
    return hits / len(x)


def main(
    out: Path,
    *,
    reduced: bool = False,
    seed: int = 0,
    state_lr: float = 0.1,
    T: int | None = None,
    learning_rate: float | None = None,
    decay: bool = True,
) -> dict:
    """Train PC and backprop side by side; write the JSON and the figure into ``out``; return the figures."""
    t0 = time.perf_counter()
    s = dict(REDUCED if reduced else FULL)
    s["T"] = s["T"] if T is None else T
    s["learning_rate"] = s["learning_rate"] if learning_rate is None else learning_rate
    out.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr, x_te, y_te = mnist(s["n_train"], s["n_test"])

    network = PCNetwork.chain(SIZES, names=["x", "h1", "h2", "y"], activation="relu")
    params = network.init(jax.random.key(seed))
    steps = s["epochs"] * (s["n_train"] // s["batch_size"])
    lr = optax.cosine_decay_schedule(s["learning_rate"], steps) if decay else s["learning_rate"]
    trainer = PCTrainer(network, optimizer_x=optax.sgd(state_lr), optimizer_p=optax.adam(lr), T=s["T"])
    opt_state = trainer.init(params)
    pc_predict = jax.jit(lambda p, x: network.forward(p, {"x": x})["y"])

    # The same architecture and initial weights, trained by backprop on the squared error to the one-hot label
    # (the energy of the output's unit-Gaussian cell).
    bp_params = params
    adam = optax.adam(lr)
    bp_state = adam.init(bp_params)

    @jax.jit
    def bp_step(p, state, x, onehot):
        loss, grads = jax.value_and_grad(lambda q: 0.5 * jnp.sum((pc_predict(q, x) - onehot) ** 2) / len(x))(p)
        updates, state = adam.update(grads, state, p)
        return optax.apply_updates(p, updates), state, loss

    history = {"epoch": [0], "pc_test_accuracy": [accuracy(pc_predict, params, x_te, y_te)]}
    history["backprop_test_accuracy"] = list(history["pc_test_accuracy"])
    rng = np.random.default_rng(seed)
    bs = s["batch_size"]
    for epoch in range(1, s["epochs"] + 1):
        order = rng.permutation(len(x_tr))
        for i in range(0, len(order) - bs + 1, bs):
            rows = order[i : i + bs]
            x, onehot = jnp.asarray(x_tr[rows]), jax.nn.one_hot(y_tr[rows], 10)
            params, opt_state, _ = trainer.step(params, opt_state, {"x": x, "y": onehot})
            bp_params, bp_state, _ = bp_step(bp_params, bp_state, x, onehot)
        history["epoch"].append(epoch)
        history["pc_test_accuracy"].append(accuracy(pc_predict, params, x_te, y_te))
        history["backprop_test_accuracy"].append(accuracy(pc_predict, bp_params, x_te, y_te))
        print(
            f"epoch {epoch}: test accuracy PC {100 * history['pc_test_accuracy'][-1]:.2f}%, "
            f"backprop {100 * history['backprop_test_accuracy'][-1]:.2f}%"
        )

    # One supervised inference: with both ends clamped, the hidden states settle and the energy falls.
    clamps = {"x": jnp.asarray(x_te[:100]), "y": jax.nn.one_hot(y_te[:100], 10)}
    trace = np.asarray(trainer.infer(params, clamps).energy) / 100
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    axes[0].plot(history["epoch"], 100 * np.array(history["pc_test_accuracy"]), "o-", label="PC")
    axes[0].plot(history["epoch"], 100 * np.array(history["backprop_test_accuracy"]), "s--", label="backprop")
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title="supervised PC vs backprop")
    axes[0].legend()
    axes[1].plot(trace)
    axes[1].set(xlabel="inference step", ylabel="energy per image", title="inference, image and label clamped")
    fig.tight_layout()
    fig.savefig(out / "supervised_pc.png", dpi=100)
    plt.close(fig)

    figures = {
        "settings": {**s, "sizes": list(SIZES)},
        "reduced": reduced,
        **history,
        "inference_energy": trace.tolist(),
        "seconds": time.perf_counter() - t0,
        **provenance(),
    }
    (out / "supervised_pc.json").write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Supervised predictive coding on MNIST, with backprop for reference.")
    parser.add_argument("--out", type=Path, default=Path("runs/supervised_pc"), help="output folder")
    parser.add_argument("--reduced", action="store_true", help="2,000 images, 1 epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--state-lr", type=float, default=0.1, help="SGD step of the states")
    parser.add_argument("--T", type=int, default=None, help="state steps per batch (default 20)")
    parser.add_argument("--lr", type=float, default=None, help="Adam's initial learning rate (3e-4; reduced 1e-3)")
    parser.add_argument("--no-decay", action="store_true", help="constant learning rate")
    args = parser.parse_args()
    main(
        args.out,
        reduced=args.reduced,
        seed=args.seed,
        state_lr=args.state_lr,
        T=args.T,
        learning_rate=args.lr,
        decay=not args.no_decay,
    )
