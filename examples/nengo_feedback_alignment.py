"""# Backprop and feedback alignment in Nengo, on spiking LIF neurons

The network of seed 004 (a request from the Nengo community): two sinusoids `x = (sin(pi t),
sin(0.7 pi t))` feed a hidden ensemble of spiking LIF neurons, whose decoded output should become
the product `x0 * x1`. The output connection learns its decoders with nengo's PES; the input
connection into the hidden ensemble learns the ensemble's **encoders and bias** with
`predcode.nengo.BackProp` (the output error sent back through the current decoders) or
`predcode.nengo.FeedbackAlignment` (through a fixed random matrix), both nengo learning rules on
the reference simulator. The baseline is PES on the decoders alone, with the encoders fixed.

```python
layer2 = nengo.Connection(hidden, output, function=lambda x: 0,
                          learning_rule_type=nengo.PES(learning_rate=1e-4))
layer1 = nengo.Connection(inp, hidden,
                          learning_rule_type=BackProp(layer2, learning_rate=1000.0))
# or: learning_rule_type=FeedbackAlignment(error_size=1, learning_rate=1000.0, seed=0)
nengo.Connection(error, layer1.learning_rule)     # error = output - target
nengo.Connection(error, layer2.learning_rule)
```

Each run learns for 60 s of simulated time (dt 1 ms), then runs 10 s more with learning switched
off (the error sent to the rules is gated to zero). It reports the mean squared error over the last
10 s of learning as a fraction of the target's variance over those 10 s, and the frozen phase's
MSE over that.

```
python examples/nengo_feedback_alignment.py --out runs/nengo            # 10, 30, 100 neurons, 5 seeds
python examples/nengo_feedback_alignment.py --out /tmp/nengo --reduced  # 30 neurons, 1 seed, 6 + 2 s
```

It writes `nengo_feedback_alignment.json` (every run's numbers and the per-size summary) and
`nengo_feedback_alignment.png` (target and output for each rule, 100 neurons, seed 0, the end of
learning and the frozen phase). The measured numbers are in `results/nengo.md`; the page
[Nengo learning rules](../nengo.md) explains the rules. The figure below is the full setting's
(`--out runs/nengo`):

![target and output per rule, 100 LIF neurons](../img/nengo_feedback_alignment/nengo_feedback_alignment.png)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nengo
import numpy as np

from predcode.experiments.provenance import provenance
from predcode.nengo import BackProp, FeedbackAlignment

RULES = ("pes", "backprop", "fa")
FULL = {"neurons": (10, 30, 100), "seeds": (0, 1, 2, 3, 4), "learn_s": 60.0, "frozen_s": 10.0, "window_s": 10.0}
REDUCED = {"neurons": (30,), "seeds": (0,), "learn_s": 6.0, "frozen_s": 2.0, "window_s": 2.0}
DT = 0.001
PES_RATE = 1e-4
ENCODER_RATE = 1000.0  # chosen on seeds 100 and 101 (not the reported 0-4) among 1e2, 1e3, 1e4, 1e5


def build(rule: str, n_neurons: int, seed: int, learn_s: float, *, encoder_rate: float = ENCODER_RATE):
    """The seed's network with ``rule`` on the input connection; returns ``(network, probes)``.

    ``rule``: ``"pes"`` (decoders only), ``"backprop"`` or ``"fa"`` (encoders and bias too). The
    hidden ensemble and the connections carry explicit seeds, so every rule starts from the same
    neurons (nengo's automatic seeds would shift with the number of connections).
    """
    with nengo.Network(seed=seed) as net:
        inp = nengo.Node(lambda t: (np.sin(t * np.pi), np.sin(t * 0.7 * np.pi)))
        hidden = nengo.Ensemble(n_neurons=n_neurons, dimensions=2, seed=seed)  # spiking LIF
        output = nengo.Node(size_in=1)
        target = nengo.Node(size_in=1)
        error = nengo.Node(size_in=1)
        # learning is switched off after learn_s by sending the rules a zero error
        gate = nengo.Node(lambda t, e: e if t < learn_s else 0.0 * e, size_in=1)
        nengo.Connection(inp, target, function=lambda x: x[0] * x[1], synapse=None)
        nengo.Connection(output, error, synapse=None)
        nengo.Connection(target, error, transform=-1, synapse=None)
        nengo.Connection(error, gate, synapse=None)

        layer2 = nengo.Connection(
            hidden, output, function=lambda x: 0, learning_rule_type=nengo.PES(learning_rate=PES_RATE), seed=seed
        )
        if rule == "backprop":
            learn: nengo.learning_rules.LearningRuleType | None = BackProp(layer2, learning_rate=encoder_rate)
        elif rule == "fa":
            learn = FeedbackAlignment(error_size=1, learning_rate=encoder_rate, seed=seed)
        elif rule == "pes":
            learn = None
        else:
            raise ValueError(f"rule: expected one of {list(RULES)}, got {rule!r}")
        layer1 = nengo.Connection(inp, hidden, learning_rule_type=learn, seed=seed)
        if learn is not None:
            nengo.Connection(gate, layer1.learning_rule)
        nengo.Connection(gate, layer2.learning_rule)
        probes = {
            "target": nengo.Probe(target),
            "output": nengo.Probe(output),
            "error": nengo.Probe(error),
        }
    return net, probes


def run(rule: str, n_neurons: int, seed: int, *, learn_s: float, frozen_s: float, window_s: float, **kw) -> dict:
    """Simulate one network; return its scores and the traces of its last ``window_s`` + frozen phase."""
    net, probes = build(rule, n_neurons, seed, learn_s, **kw)
    with nengo.Simulator(net, dt=DT, progress_bar=False) as sim:
        hidden = net.ensembles[0]
        E_sig, b_sig = sim.model.sig[hidden]["encoders"], sim.model.sig[hidden.neurons]["bias"]
        E0, b0 = np.array(sim.signals[E_sig]), np.array(sim.signals[b_sig])
        t0 = time.perf_counter()
        sim.run(learn_s + frozen_s)
        wall = time.perf_counter() - t0
        E1, b1 = np.array(sim.signals[E_sig]), np.array(sim.signals[b_sig])
    t = sim.trange()
    err, tgt = sim.data[probes["error"]][:, 0], sim.data[probes["target"]][:, 0]
    last = (t > learn_s - window_s) & (t <= learn_s)
    frozen = t > learn_s
    var = float(np.var(tgt[last]))
    nmse = float(np.mean(err[last] ** 2) / var)
    nmse_frozen = float(np.mean(err[frozen] ** 2) / var)
    keep = t > learn_s - window_s
    return {
        "rule": rule,
        "neurons": n_neurons,
        "seed": seed,
        "nmse_last": nmse,
        "nmse_frozen": nmse_frozen,
        "frozen_ratio": nmse_frozen / nmse,
        # relative change of the scaled encoders and of the bias over the run (0 for PES alone)
        "encoder_change": float(np.linalg.norm(E1 - E0) / np.linalg.norm(E0)),
        "bias_change": float(np.linalg.norm(b1 - b0) / np.linalg.norm(b0)),
        "sim_s_per_wall_s": (learn_s + frozen_s) / wall,
        "trace": {
            "t": t[keep][::5].tolist(),
            "target": tgt[keep][::5].tolist(),
            "output": sim.data[probes["output"]][keep, 0][::5].tolist(),
        },
    }


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per (neurons, rule)."""
    rows = []
    for n in sorted({r["neurons"] for r in runs}):
        for rule in RULES:
            sel = [r for r in runs if r["neurons"] == n and r["rule"] == rule]
            if not sel:
                continue
            row: dict = {"neurons": n, "rule": rule, "n_seeds": len(sel)}
            for key in ("nmse_last", "nmse_frozen", "frozen_ratio"):
                vals = np.array([r[key] for r in sel])
                row[key] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
                row[key]["values"] = vals.tolist()
            rows.append(row)
    return rows


def plot(runs: list[dict], path: Path, *, learn_s: float) -> None:
    """Target and output per rule for the largest network of the first seed."""
    n = max(r["neurons"] for r in runs)
    seed = min(r["seed"] for r in runs)
    sel = {r["rule"]: r for r in runs if r["neurons"] == n and r["seed"] == seed}
    fig, axes = plt.subplots(len(sel), 1, figsize=(10, 2.3 * len(sel)), sharex=True, squeeze=False)
    for ax, rule in zip(axes[:, 0], [r for r in RULES if r in sel]):
        tr = sel[rule]["trace"]
        ax.plot(tr["t"], tr["target"], "k", lw=1.5, label="target x0*x1")
        ax.plot(tr["t"], tr["output"], "C1", lw=0.8, label="output")
        ax.axvline(learn_s, color="gray", ls="--", lw=1)
        name = {"pes": "PES on decoders only", "backprop": "BackProp + PES", "fa": "FeedbackAlignment + PES"}[rule]
        ax.set_title(
            f"{name}: MSE/var {100 * sel[rule]['nmse_last']:.1f}% (learning), "
            f"{100 * sel[rule]['nmse_frozen']:.1f}% (frozen, after the dashed line)",
            fontsize=9,
        )
        ax.set_ylabel(f"{n} LIF")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("simulated time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(out: Path, *, reduced: bool = False, neurons=None, seeds=None, encoder_rate: float = ENCODER_RATE) -> dict:
    """Run every rule, size and seed; write the JSON and the figure into ``out``; return the figures."""
    t0 = time.perf_counter()
    s = dict(REDUCED if reduced else FULL)
    if neurons:
        s["neurons"] = tuple(neurons)
    if seeds:
        s["seeds"] = tuple(seeds)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for n in s["neurons"]:
        for seed in s["seeds"]:
            for rule in RULES:
                r = run(
                    rule,
                    n,
                    seed,
                    learn_s=s["learn_s"],
                    frozen_s=s["frozen_s"],
                    window_s=s["window_s"],
                    encoder_rate=encoder_rate,
                )
                print(
                    f"{n:4d} neurons seed {seed} {rule:9s} MSE/var {100 * r['nmse_last']:6.2f}% "
                    f"frozen {100 * r['nmse_frozen']:6.2f}% ({r['sim_s_per_wall_s']:.1f} sim s / wall s)",
                    flush=True,
                )
                runs.append(r)
    plot(runs, out / "nengo_feedback_alignment.png", learn_s=s["learn_s"])
    summary = summarize(runs)
    for row in summary:
        m, f = row["nmse_last"], row["frozen_ratio"]
        print(
            f"{row['neurons']:4d} {row['rule']:9s} {100 * m['mean']:.2f} +- {100 * m['std']:.2f}%  "
            f"frozen/learning {f['mean']:.2f} +- {f['std']:.2f}"
        )
    for r in runs:
        if not (r["neurons"] == max(s["neurons"]) and r["seed"] == min(s["seeds"])):
            del r["trace"]
    figures = {
        "settings": {
            **{k: list(v) if isinstance(v, tuple) else v for k, v in s.items()},
            "dt": DT,
            "pes_rate": PES_RATE,
            "encoder_rate": encoder_rate,
        },
        "reduced": reduced,
        "summary": summary,
        "runs": runs,
        "seconds": time.perf_counter() - t0,
        **provenance(),
    }
    (out / "nengo_feedback_alignment.json").write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="BackProp and FeedbackAlignment nengo rules on the seed's x0*x1 task.")
    parser.add_argument("--out", type=Path, default=Path("runs/nengo"), help="output folder")
    parser.add_argument("--reduced", action="store_true", help="30 neurons, one seed, 6 s learning + 2 s frozen")
    parser.add_argument("--neurons", type=int, nargs="*", help="ensemble sizes (default 10 30 100)")
    parser.add_argument("--seeds", type=int, nargs="*", help="seeds (default 0..4)")
    parser.add_argument("--encoder-rate", type=float, default=ENCODER_RATE, help="BackProp / FA learning rate")
    args = parser.parse_args()
    main(args.out, reduced=args.reduced, neurons=args.neurons, seeds=args.seeds, encoder_rate=args.encoder_rate)
