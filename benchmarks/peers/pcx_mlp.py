"""PCX's own PC-SE MLP benchmark run on this machine: the peer number beside ``results/pcx_mlp.md``.

PCX's benchmark script ``examples/s4_1_discriminative_mode/MLP/{mnist,fmnist}/PC_SE.py`` (commit
``23ca0f9`` of github.com/liukidar/pcx) with the hyperparameters of its tuned
``L_PC_SE_{mnist,fmnist}.yaml``, written for pcx 0.6.3 (``.venv-pcx``; the script was written for
the older ``pcax`` package, whose names moved): a ``pxc.EnergyModule`` of ``pxnn.Linear`` layers
784-128-128-128-10 with GELU and one ``pxc.Vode`` after each (squared-error energies, the output
vode's ``h`` set to the one-hot label), states started by a forward pass, ``T`` steps of
``sgd(lr_x, momentum)`` on the states through ``pxf.value_and_grad`` of the batch energy
(``pmean`` over ``pxf.vmap``, the state gradient scaled back up by the batch size as the
script's ``scale_by_batch_size=True`` does: per-sample gradients), then ``adamw`` on the weights
with PCX's warmup-cosine schedule
(init lr, peak 1.1 lr after 10% of the steps, end 0.1 lr); batch 128, shuffled, the last partial
batch dropped (468 steps an epoch), pixels normalised to [-1, 1], 25 epochs; after each epoch the
test accuracy of a forward pass on the test set in batches of 128 (the last partial batch
dropped, as PCX's loader does: 9,984 images). PCX's reported number is, per seed, the maximum of
those 25 accuracies, averaged over its 7 seeds (``seed.py``: 0 to 6).

The data are the original idx files in ``$PREDCODE_DATA/{mnist,fashion-mnist}`` (no torchvision);
the shuffling is NumPy's, seeded by the seed, in place of torch's.

    benchmarks/peers/.venv-pcx/bin/python benchmarks/peers/pcx_mlp.py --dataset mnist --seeds 0 1 2 \
        --json results/pcx_mlp_peer.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from common import append_record, load_idx, run_provenance

# L_PC_SE_mnist.yaml and L_PC_SE_fmnist.yaml (the same numbers as configs/pc/pcx_mlp_*_se.toml)
HP = {
    "mnist": {
        "T": 8,
        "lr_w": 0.0002968930522737348,
        "wd": 0.0003550241114984682,
        "lr_x": 0.010534787245955935,
        "momentum": 0.65,
    },
    "fashion-mnist": {
        "T": 5,
        "lr_w": 0.0002972210629627541,
        "wd": 0.0018383293983087593,
        "lr_x": 0.026070879231635192,
        "momentum": 0.1,
    },
}
EPOCHS, BATCH = 25, 128


def load(dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_idx(dataset, split)
    return (images.astype(np.float32) / 255.0 - 0.5) / 0.5, labels.astype(np.int32)


def run_seed(dataset: str, seed: int, epochs: int) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    import pcx as px
    import pcx.functional as pxf
    import pcx.nn as pxnn
    import pcx.predictive_coding as pxc
    import pcx.utils as pxu

    hp = HP[dataset]

    class LinearModel(pxc.EnergyModule):
        def __init__(self) -> None:
            super().__init__()
            self.act_fn = px.static(jax.nn.gelu)
            self.layers = [pxnn.Linear(784, 128), pxnn.Linear(128, 128), pxnn.Linear(128, 128), pxnn.Linear(128, 10)]
            self.vodes = [pxc.Vode() for _ in range(3)] + [pxc.Vode(pxc.se_energy)]
            self.vodes[-1].h.frozen = True

        def __call__(self, x, y):
            for v, layer in zip(self.vodes[:-1], self.layers[:-1], strict=True):
                x = v(self.act_fn(layer(x)))
            x = self.vodes[-1](self.layers[-1](x))
            if y is not None:
                self.vodes[-1].set("h", y)  # beta = 1: h = u - (u - y)
            return self.vodes[-1].get("u")

    @pxf.vmap(pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0)), in_axes=(0, 0), out_axes=0)
    def forward(x, y, *, model):
        return model(x, y)

    @pxf.vmap(
        pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0)), in_axes=(0,), out_axes=(None, 0), axis_name="batch"
    )
    def energy(x, *, model):
        y_ = model(x, None)
        return jax.lax.pmean(model.energy().sum(), "batch"), y_

    @pxf.jit()
    def train_on_batch(x, y, *, model, optim_w, optim_h):
        model.train()
        with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            forward(x, y, model=model)
        optim_h.init(pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))
        inference = pxf.value_and_grad(pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True]), has_aux=True)(energy)
        for _ in range(hp["T"]):
            with pxu.step(model, clear_params=pxc.VodeParam.Cache):
                _, g = inference(x, model=model)
            optim_h.step(model, g["model"], scale_by=x.shape[0])  # pcax: scale_by_batch_size=True
        optim_h.clear()
        learning = pxf.value_and_grad(pxu.M(pxnn.LayerParam).to([False, True]), has_aux=True)(energy)
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            _, g = learning(x, model=model)
        optim_w.step(model, g["model"])

    @pxf.jit()
    def eval_on_batch(x, y, *, model):
        model.eval()
        with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            y_ = forward(x, None, model=model).argmax(axis=-1)
        return (y_ == y).mean()

    x_train, l_train = load(dataset, "train")
    x_test, l_test = load(dataset, "test")
    y_train = np.eye(10, dtype=np.float32)[l_train]
    steps = len(x_train) // BATCH

    px.RKG.seed(seed)
    rng = np.random.default_rng(seed)
    model = LinearModel()
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(jnp.zeros((BATCH, 784)), None, model=model)
        schedule = optax.warmup_cosine_decay_schedule(
            init_value=hp["lr_w"],
            peak_value=1.1 * hp["lr_w"],
            warmup_steps=0.1 * steps * epochs,
            decay_steps=steps * epochs,
            end_value=0.1 * hp["lr_w"],
            exponent=1.0,
        )
        optim_h = pxu.Optim(lambda: optax.sgd(hp["lr_x"], momentum=hp["momentum"]))
        optim_w = pxu.Optim(lambda: optax.adamw(schedule, weight_decay=hp["wd"]), pxu.M(pxnn.LayerParam)(model))

    accs = []
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        for b in range(steps):
            idx = order[b * BATCH : (b + 1) * BATCH]
            train_on_batch(x_train[idx], y_train[idx], model=model, optim_w=optim_w, optim_h=optim_h)
        n = (len(x_test) // BATCH) * BATCH
        accs.append(
            100.0
            * float(
                np.mean(
                    [
                        eval_on_batch(x_test[i : i + BATCH], l_test[i : i + BATCH], model=model)
                        for i in range(0, n, BATCH)
                    ]
                )
            )
        )
        print(f"seed {seed} epoch {len(accs)}: test accuracy {accs[-1]:.2f}%", flush=True)
    return {
        "seed": seed,
        "test_accuracy_by_epoch": accs,
        "max_test_accuracy": max(accs),
        "best_epoch": int(np.argmax(accs)) + 1,
        "last_test_accuracy": accs[-1],
        "seconds": round(time.perf_counter() - t0, 1),
        "library": f"pcx {getattr(px, '__version__', '0.6.3')} on jax {jax.__version__}",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(HP), default="mnist")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--json", default=None, help="append one record to this JSON list")
    args = p.parse_args()
    runs = [run_seed(args.dataset, s, args.epochs) for s in args.seeds]
    best = np.array([r["max_test_accuracy"] for r in runs])
    seeds = " ".join(map(str, args.seeds))
    record = {
        "impl": "pcx",
        "method": "PC-SE",
        "dataset": args.dataset,
        "epochs": args.epochs,
        "hyperparameters": HP[args.dataset],
        "mean_max_test_accuracy": float(best.mean()),
        "std_max_test_accuracy": float(best.std()),
        "runs": runs,
        **run_provenance(),
        "command": f"benchmarks/peers/pcx_mlp.py --dataset {args.dataset} --seeds {seeds} --epochs {args.epochs}",
    }
    print(json.dumps({k: v for k, v in record.items() if k != "runs"}), flush=True)
    if args.json:
        append_record(args.json, record)


if __name__ == "__main__":
    main()
