"""Speed of PCX's VGG-5 predictive-coding network, predcode against PCX 0.6.3, in one run.

The network of PCX's discriminative benchmark (``examples/discriminative_experiments/VGG5``, config
``VGG5_PCN_SE.yaml``): a CIFAR-shaped image 32 x 32 x 3 (clamped), four blocks
``maxpool2(gelu(conv3x3(., pad 1)))`` of 128, 256, 512 and 512 channels, each into an inferred
value node (16x16x128, 8x8x256, 4x4x512, 2x2x512), and a linear layer 2048 -> 10 into the label
node (clamped to the one-hot label); squared-error energies. A training step is a forward sweep,
``T = 7`` state steps of ``sgd(0.0235, momentum=0.3)`` on the energy's gradient, then one
``adamw(2.66e-4, weight_decay=6.66e-3)`` step on the weights (the config's optimizers; the
learning-rate schedule, which does not change the work, is left out). Random data (speed only),
batch 128, float32.

* ``pcx``: PCX's own style (``pxc.EnergyModule`` with ``pxnn.Conv2d``/``MaxPool2d``/``Linear`` and
  one ``pxc.Vode`` per block, per-sample calls under ``pxf.vmap``, ``pxf.value_and_grad`` for the
  states and the weights, ``pxu.Optim``, the step under ``pxf.jit`` with a Python loop over T), in
  ``.venv-pcx`` (jax 0.4.38); channels-first per sample, as PCX's equinox layers take them;
* ``predcode``: a :class:`~predcode.models.network.PCNetwork` of
  :mod:`predcode.models.conv` transforms (NHWC), trained by :class:`~predcode.learning.pc.PCTrainer`,
  in the main ``.venv``;
* ``predcode-unrolled``: ``predcode`` with ``PCTrainer(unroll=T)``: the settling loop compiled
  with all ``T`` state steps in one iteration (lax.scan's ``unroll``; config key
  ``inference.unroll``) instead of a rolled loop, the same arithmetic;
* ``predcode@pcx``: the same predcode code under PCX's JAX (``.venv-pcx``), so the library and the
  JAX release can be told apart.

Each implementation runs in its own worker process: build, the first step (compile s = first step
minus the second), then ``--calls`` timed steps; samples/s = batch / median step time; peak RSS
of the worker. Workers run one after another, ``--rounds`` times in rotation.

    .venv/bin/python benchmarks/peers/vgg5.py --json results/vgg5_peers.json --md results/vgg5_peers.md
    .venv/bin/python benchmarks/peers/vgg5.py --width 0.25 --calls 2        # a quicker, narrower run
    .venv/bin/python benchmarks/peers/vgg5.py --only pcx predcode predcode-unrolled   # without jax 0.4.38's predcode
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

T = 7
LR_X, MOMENTUM_X = 0.02348681827141059, 0.3
LR_W, WD_W = 0.0002657691155688603, 0.0066559627972820395
CHANNELS = (128, 256, 512, 512)
IMPLS = {  # label -> interpreter ($PEERS_PYTHON_MAIN / _PCX override, as for run.py)
    "pcx": os.environ.get("PEERS_PYTHON_PCX") or os.path.join(HERE, ".venv-pcx", "bin", "python"),
    "predcode": os.environ.get("PEERS_PYTHON_MAIN") or sys.executable,  # the runner's own (main) venv
    "predcode-unrolled": os.environ.get("PEERS_PYTHON_MAIN") or sys.executable,
    "predcode@pcx": os.environ.get("PEERS_PYTHON_PCX") or os.path.join(HERE, ".venv-pcx", "bin", "python"),
}


def _channels(width: float) -> tuple[int, ...]:
    return tuple(max(1, round(c * width)) for c in CHANNELS)


# ----- the implementations (imported only inside a worker) --------------------------------------
def build_predcode(batch: int, width: float, unroll: int = 1):
    import jax
    import optax

    from predcode.learning.pc import PCTrainer
    from predcode.models.conv import Conv2d, Flatten, MaxPool2d
    from predcode.models.network import Dense, Node, PCNetwork, Sequential

    nodes, shape = [Node("x", (32, 32, 3))], (32, 32, 3)
    for i, ch in enumerate(_channels(width)):
        conv = Conv2d(shape, ch, 3, 1, ((1, 1), (1, 1)), activation="gelu")
        block = Sequential((conv, MaxPool2d(conv.out_dim, 2)))
        nodes.append(Node(f"h{i + 1}", block.out_dim, {nodes[-1].name: block}))
        shape = block.out_dim
    flat = Flatten(shape)
    nodes.append(Node("y", 10, {nodes[-1].name: Sequential((flat, Dense(flat.out_dim, 10)))}))
    net = PCNetwork(nodes)
    trainer = PCTrainer(
        net,
        optimizer_x=optax.sgd(LR_X, momentum=MOMENTUM_X),
        optimizer_p=optax.adamw(LR_W, weight_decay=WD_W),
        T=T,
        unroll=unroll,
    )
    params = net.init(jax.random.key(0))
    opt = trainer.init(params)
    key = jax.random.key(1)
    x = jax.random.normal(key, (batch, 32, 32, 3))
    y = jax.nn.one_hot(jax.random.randint(jax.random.fold_in(key, 1), (batch,), 0, 10), 10)
    clamps = {"x": x, "y": y}
    state = {"params": params, "opt": opt}

    def step():
        state["params"], state["opt"], m = trainer.step(state["params"], state["opt"], clamps)
        jax.block_until_ready(state["params"])
        return float(m.energy)

    return step, f"predcode on jax {jax.__version__}" + (f", unroll={unroll}" if unroll != 1 else "")


def build_pcx(batch: int, width: float):
    import jax
    import optax
    import pcx as px
    import pcx.functional as pxf
    import pcx.nn as pxnn
    import pcx.predictive_coding as pxc
    import pcx.utils as pxu

    chans = _channels(width)

    class VGG5(pxc.EnergyModule):
        def __init__(self) -> None:
            super().__init__()
            ins = (3, *chans[:-1])
            self.blocks = [
                (pxnn.Conv2d(c_in, c_out, kernel_size=(3, 3), padding=(1, 1)), pxnn.MaxPool2d(kernel_size=2, stride=2))
                for c_in, c_out in zip(ins, chans, strict=True)
            ]
            self.head = pxnn.Linear(chans[-1] * 2 * 2, 10)
            self.vodes = [pxc.Vode() for _ in chans] + [pxc.Vode()]
            self.vodes[-1].h.frozen = True

        def __call__(self, x, y):
            for (conv, pool), vode in zip(self.blocks, self.vodes[:-1], strict=True):
                x = vode(pool(jax.nn.gelu(conv(x))))
            x = self.vodes[-1](self.head(x.flatten()))
            if y is not None:
                self.vodes[-1].set("h", y)
            return self.vodes[-1].get("u")

    @pxf.vmap(pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0)), in_axes=(0, 0), out_axes=0)
    def forward(x, y, *, model):
        return model(x, y)

    @pxf.vmap(
        pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0)), in_axes=(0,), out_axes=(None, 0), axis_name="batch"
    )
    def energy(x, *, model):
        y_ = model(x, None)
        return jax.lax.psum(model.energy(), "batch"), y_

    @pxf.jit()
    def train_on_batch(x, y, *, model, optim_w, optim_h):
        model.train()
        with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            forward(x, y, model=model)
        optim_h.init(pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))
        inference = pxf.value_and_grad(pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True]), has_aux=True)(energy)
        for _ in range(T):
            with pxu.step(model, clear_params=pxc.VodeParam.Cache):
                (e, _), g = inference(x, model=model)
            optim_h.step(model, g["model"])
        optim_h.clear()
        learning = pxf.value_and_grad(pxu.M(pxnn.LayerParam).to([False, True]), has_aux=True)(energy)
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            (e, _), g = learning(x, model=model)
        optim_w.step(model, g["model"], scale_by=1.0 / x.shape[0])
        return e

    px.RKG.seed(0)
    model = VGG5()
    key = jax.random.key(1)
    x = jax.random.normal(key, (batch, 3, 32, 32))
    y = jax.nn.one_hot(jax.random.randint(jax.random.fold_in(key, 1), (batch,), 0, 10), 10)
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(x, None, model=model)
    optim_h = pxu.Optim(lambda: optax.sgd(LR_X, momentum=MOMENTUM_X))
    optim_w = pxu.Optim(lambda: optax.adamw(LR_W, weight_decay=WD_W), pxu.M(pxnn.LayerParam)(model))

    def step():
        e = train_on_batch(x, y, model=model, optim_w=optim_w, optim_h=optim_h)
        jax.block_until_ready(model.head.nn.weight.get())
        return float(e) / batch

    return step, f"pcx {getattr(px, '__version__', '0.6.3')} on jax {jax.__version__}"


def worker(label: str, batch: int, width: float, calls: int) -> dict:
    t0 = time.perf_counter()
    if label == "pcx":
        step, library = build_pcx(batch, width)
    else:
        step, library = build_predcode(batch, width, unroll=T if label == "predcode-unrolled" else 1)
    built = time.perf_counter() - t0
    times, energies = [], []
    for _ in range(2 + calls):
        t = time.perf_counter()
        energies.append(step())
        times.append(time.perf_counter() - t)
    timed = times[2:] or times[1:]
    median = statistics.median(timed)
    return {
        "label": label,
        "library": library,
        "build_s": built,
        "first_step_s": times[0],
        "compile_s": times[0] - times[1],
        "step_s": timed,
        "median_step_s": median,
        "samples_per_s": batch / median,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "energy_first_last": [energies[0], energies[-1]],
    }


# ----- the runner ---------------------------------------------------------------------------------
def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier (1: PCX's 128/256/512/512)")
    ap.add_argument("--calls", type=int, default=2, help="timed steps per worker after the two warm-up steps")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=list(IMPLS), choices=list(IMPLS))
    ap.add_argument("--json")
    ap.add_argument("--md")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch, args.width, args.calls)), flush=True)
        return
    started = time.time()
    rows: dict[str, list[dict]] = {label: [] for label in args.only}
    for r in range(args.rounds):
        order = args.only[r % len(args.only) :] + args.only[: r % len(args.only)]
        for label in order:
            py = IMPLS[label]
            if not os.path.exists(py):
                raise SystemExit(f"vgg5.py: {py} not found; run `bash benchmarks/peers/setup.sh` first")
            env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
            cmd = [py, os.path.abspath(__file__), "--worker", label, "--batch", str(args.batch)]
            cmd += ["--width", str(args.width), "--calls", str(args.calls)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                raise SystemExit(f"vgg5.py: worker {label} failed:\n{out.stderr[-3000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows[label].append(row)
            print(
                f"round {r + 1} {label:13s} {row['samples_per_s']:8.2f} samples/s  compile {row['compile_s']:6.1f} s  "
                f"peak RSS {row['peak_rss_mb']:7.0f} MB  ({row['library']})",
                flush=True,
            )
    summary = {}
    for label, rs in rows.items():
        summary[label] = {
            "library": rs[0]["library"],
            "samples_per_s": statistics.median(r["samples_per_s"] for r in rs),
            "compile_s": statistics.median(r["compile_s"] for r in rs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "rounds": rs,
        }
    ratio = None
    if "pcx" in summary and "predcode" in summary:
        ratio = summary["predcode"]["samples_per_s"] / summary["pcx"]["samples_per_s"]
    ratio_unrolled = None
    if "pcx" in summary and "predcode-unrolled" in summary:
        ratio_unrolled = summary["predcode-unrolled"]["samples_per_s"] / summary["pcx"]["samples_per_s"]
    doc = {
        "benchmark": "PCX VGG-5 PC network (VGG5_PCN_SE.yaml), CIFAR-shaped random input",
        "command": " ".join(
            [os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(ROOT) else sys.executable, *sys.argv]
        ),
        "commit": _git_commit(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()}-core {platform.machine()} CPU",
        "load_average_start_end": [None, list(os.getloadavg())],
        "wall_s": time.time() - started,
        "batch": args.batch,
        "T": T,
        "channels": list(_channels(args.width)),
        "optimizers": {
            "x": f"sgd({LR_X:.4g}, momentum={MOMENTUM_X})",
            "w": f"adamw({LR_W:.4g}, weight_decay={WD_W:.4g})",
        },
        "results": summary,
        "predcode_over_pcx": ratio,
        "predcode_unrolled_over_pcx": ratio_unrolled,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    if args.md:
        lines = [
            "| implementation | library | samples/s | compile s | peak RSS MB |",
            "|---|---|---|---|---|",
        ]
        for label, s in summary.items():
            rate, comp, rss = s["samples_per_s"], s["compile_s"], s["peak_rss_mb"]
            lines.append(f"| `{label}` | {s['library']} | {rate:.2f} | {comp:.1f} | {rss:.0f} |")
        with open(args.md, "w") as f:
            f.write("\n".join(lines) + "\n")
    if ratio is not None:
        print(f"predcode / pcx samples/s: {ratio:.2f}x")
    if ratio_unrolled is not None:
        print(f"predcode-unrolled / pcx samples/s: {ratio_unrolled:.2f}x")


if __name__ == "__main__":
    main()
