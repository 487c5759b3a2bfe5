"""JPC's own muPC residual MLP on MNIST: the peer number beside ``scripts/mupc_depth.py``.

The training loop of JPC's muPC paper script (``experiments/mupc_paper/train_pcn_no_metrics.py``,
defaults: width 512, ReLU, no biases, N(0, 1) weights, one-layer skips except around the input and
output layers, Adam 0.1 on the weights, batch 64, T = 8 gradient-descent state steps of 0.5 on the
batch-mean energy from the feedforward sweep, 1 epoch, test accuracy of the feedforward pass every
``--test-every`` steps), written with JPC's public functions (``jpc.make_mlp``,
``jpc.make_skip_model``, ``jpc.init_activities_with_ffwd``, ``jpc.update_pc_activities``,
``jpc.update_pc_params``, ``jpc.test_discriminative_pc``) in float32, so that a predcode row of
``results/mupc.md`` and JPC's row come from the same network, data and steps on one machine.

JPC is not on PyPI: it runs in a venv of its own, ``python3.11 -m venv benchmarks/peers/.venv-jpc`` then
``benchmarks/peers/.venv-jpc/bin/pip install -r benchmarks/peers/requirements-jpc.txt`` (jax 0.4.38, the newest its
pyproject allows, and JPC from its repository at the pinned commit; offline, ``pip install
--no-deps`` of a checkout at that commit beside the other pins). The MNIST files are
read from ``$PREDCODE_DATA/mnist`` (the original idx.gz files); pixels are normalised with JPC's
constants (mean 0.1307, std 0.3081), all 60,000 training images are used as JPC does (no
validation split), the test set in batches of 64 with the last partial batch dropped, as JPC's
loader does.

    JPC_COMMIT=7d6cc05 benchmarks/peers/.venv-jpc/bin/python benchmarks/peers/jpc_mupc.py --depth 8 \
        --json results/mupc_jpc.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from common import append_record, load_idx, run_provenance


def load_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_idx("mnist", split)
    x = (images.astype(np.float32) / 255.0 - 0.1307) / 0.3081
    return x, np.eye(10, dtype=np.float32)[labels]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=8, help="weight layers (JPC's n_hidden + 1)")
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--param", default="mupc", choices=["mupc", "sp"])
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate on the weights")
    p.add_argument("--activity-lr", type=float, default=0.5)
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--test-every", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="append one record to this JSON list")
    args = p.parse_args()

    import equinox as eqx
    import jax
    import jax.random as jr
    import jpc
    import optax

    x_train, y_train = load_mnist("train")
    x_test, y_test = load_mnist("test")

    keys = jr.split(jr.PRNGKey(args.seed), 4)
    model = jpc.make_mlp(keys[0], 784, args.width, args.depth, 10, "relu", use_bias=False, param_type=args.param)
    skip_model = jpc.make_skip_model(args.depth)
    param_optim = optax.adam(args.lr)
    opt_state = param_optim.init((eqx.filter(model, eqx.is_array), skip_model))
    activity_optim = optax.sgd(args.activity_lr)

    @eqx.filter_jit
    def train_step(model, skip_model, opt_state, x, y):
        activities = jpc.init_activities_with_ffwd(model=model, input=x, skip_model=skip_model, param_type=args.param)
        a_state = activity_optim.init(activities)
        for _ in range(args.T):
            out = jpc.update_pc_activities(
                params=(model, skip_model),
                activities=activities,
                optim=activity_optim,
                opt_state=a_state,
                output=y,
                input=x,
                param_type=args.param,
            )
            activities, a_state = out["activities"], out["opt_state"]
        out = jpc.update_pc_params(
            params=(model, skip_model),
            activities=activities,
            optim=param_optim,
            opt_state=opt_state,
            output=y,
            input=x,
            param_type=args.param,
        )
        return out["model"], out["skip_model"], out["opt_state"]

    def evaluate(model, skip_model) -> float:
        n = (len(x_test) // args.batch) * args.batch
        accs = [
            float(
                jpc.test_discriminative_pc(
                    model=model,
                    output=y_test[i : i + args.batch],
                    input=x_test[i : i + args.batch],
                    skip_model=skip_model,
                    param_type=args.param,
                )[1]
            )
            for i in range(0, n, args.batch)
        ]
        return float(np.mean(accs))

    rng = np.random.default_rng(args.seed)
    steps_per_epoch = len(x_train) // args.batch
    tests: list[dict] = []
    step = 0
    t0 = time.perf_counter()
    train_s = 0.0
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_train))
        for b in range(steps_per_epoch):
            idx = order[b * args.batch : (b + 1) * args.batch]
            ts = time.perf_counter()
            model, skip_model, opt_state = train_step(model, skip_model, opt_state, x_train[idx], y_train[idx])
            jax.block_until_ready(eqx.filter(model, eqx.is_array))
            train_s += time.perf_counter() - ts
            step += 1
            if step % args.test_every == 0 or (epoch == args.epochs and b == steps_per_epoch - 1):
                acc = evaluate(model, skip_model)
                tests.append({"step": step, "epoch": epoch, "test_accuracy": acc})
                print(f"step {step} epoch {epoch}: test accuracy {acc:.2f}%", flush=True)
    record = {
        "impl": "jpc",
        "jpc_commit": os.environ.get("JPC_COMMIT", ""),
        "jax": jax.__version__,
        "depth": args.depth,
        "width": args.width,
        "param": args.param,
        "lr": args.lr,
        "activity_lr": args.activity_lr,
        "T": args.T,
        "batch": args.batch,
        "epochs": args.epochs,
        "seed": args.seed,
        "final_test_accuracy": tests[-1]["test_accuracy"],
        "max_test_accuracy": max(t["test_accuracy"] for t in tests),
        "tests": tests,
        "train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
        **run_provenance(),
        "command": "benchmarks/peers/jpc_mupc.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "json"),
    }
    print(json.dumps({k: v for k, v in record.items() if k != "tests"}), flush=True)
    if args.json:
        append_record(args.json, record)


if __name__ == "__main__":
    main()
