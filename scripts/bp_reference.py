"""Backprop reference for a supervised PC-network config: the same network, data, optimizer and epochs.

The network of ``--config`` (any supervised ``configs/pc/*.toml``, dense or convolutional) trained by
backprop through its feedforward pass on the squared error ``0.5 ||onehot(y) - f(x)||^2`` (batch
mean): the objective whose gradient supervised PC's weight update approaches when the output cell's
variance is large against the hidden cells' (``output_sigma = 100`` in
``configs/pc/fashion_mnist_conv.toml``; tests/test_network.py). The weights take the config's own
optimizer and schedule (``optimizer.build``), batches of ``train.batch_size`` in a seeded shuffle
(the last partial batch dropped), and after each epoch the validation and test accuracies of the
forward pass. What it tells: how far the PC-trained number is from what the architecture reaches
with exact gradients in the same budget, i.e. whether a missed accuracy target is the
architecture's or the learning rule's.

    PREDCODE_DATA=../shared/data .venv/bin/python scripts/bp_reference.py \\
        --config configs/pc/fashion_mnist_conv.toml --epochs 12 --json results/conv_bp_reference.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from predcode.experiments.atomic import write_text
from predcode.experiments.config import build_network, load_config
from predcode.experiments.pc_fit import load_pc_data, predict_labels
from predcode.experiments.provenance import provenance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--epochs", type=int, default=None, help="default: the config's train.epochs")
    ap.add_argument("--seed", type=int, default=None, help="default: the config's train.seed")
    ap.add_argument("--json", default=None, help="append one record to this JSON list")
    args = ap.parse_args()

    cfg = load_config(args.config)
    epochs = args.epochs or cfg.train.epochs
    seed = cfg.train.seed if args.seed is None else args.seed
    net = build_network(cfg)
    data = load_pc_data(cfg)
    first, last = net.names[0], net.names[-1]
    shape, n_out = net.nodes[0].shape, net.nodes[-1].dim
    batch = cfg.train.batch_size
    steps = len(data.x_train) // batch
    optimizer = cfg.optimizer.build(epochs * steps)
    params = net.init(jax.random.key(seed))
    opt_state = optimizer.init(params)

    def loss(p, x, y):
        out = net.forward(p, {first: jnp.reshape(x, (x.shape[0], *shape))})[last]
        return 0.5 * jnp.mean(jnp.sum((jax.nn.one_hot(y, n_out) - out) ** 2, axis=1))

    @jax.jit
    def step(p, s, x, y):
        value, g = jax.value_and_grad(loss)(p, x, y)
        updates, s = optimizer.update(g, s, p)
        return optax.apply_updates(p, updates), s, value

    def accuracy(p, x, y) -> float:
        return float(np.mean(predict_labels(net, p, x) == y))

    rng = np.random.default_rng(seed)
    history = []
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(data.x_train))
        te = time.perf_counter()
        for b in range(steps):
            idx = order[b * batch : (b + 1) * batch]
            params, opt_state, value = step(params, opt_state, data.x_train[idx], data.y_train[idx])
        jax.block_until_ready(params)
        seconds = time.perf_counter() - te
        row = {
            "epoch": epoch,
            "train_loss_last_batch": float(value),
            "val_accuracy": accuracy(params, data.x_val, data.y_val),
            "test_accuracy": accuracy(params, data.x_test, data.y_test),
            "seconds": round(seconds, 1),
        }
        history.append(row)
        print(json.dumps(row), flush=True)
    best = max(history, key=lambda r: r["val_accuracy"])
    record = {
        "config": args.config,
        "rule": "backprop (squared error of the forward pass)",
        "epochs": epochs,
        "seed": seed,
        "n_train": len(data.x_train),
        "test_accuracy_best_val_epoch": best["test_accuracy"],
        "best_val_epoch": best["epoch"],
        "test_accuracy_max_over_epochs": max(r["test_accuracy"] for r in history),
        "test_accuracy_last_epoch": history[-1]["test_accuracy"],
        "history": history,
        "train_seconds": round(time.perf_counter() - t0, 1),
        **provenance(),
        "command": f"scripts/bp_reference.py --config {args.config} --epochs {epochs} --seed {seed}",
    }
    print(json.dumps({k: v for k, v in record.items() if k != "history"}), flush=True)
    if args.json:
        path = Path(args.json)
        rows = json.loads(path.read_text()) if path.is_file() else []
        rows.append(record)
        write_text(path, json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
