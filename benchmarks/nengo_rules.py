"""Speed of the predcode.nengo learning rules: simulated seconds per wall second on nengo's reference simulator.

The network of ``examples/nengo_feedback_alignment.py`` (100 spiking LIF neurons by default,
dt 1 ms, PES on the decoders), with ``BackProp`` or ``FeedbackAlignment`` on the encoders and bias
against PES alone. Each rule's network is built once; the timing is the best of ``--reps`` runs of
``--sim-s`` simulated seconds (the best, since a shared machine only ever slows a run down), with
the process CPU time alongside. The cost of a rule is PES's simulated s per wall s over its own.

    .venv/bin/python benchmarks/nengo_rules.py --json results/nengo_rules.json

See results/nengo.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nengo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from nengo_feedback_alignment import RULES, build

from predcode.experiments.provenance import provenance


def time_rule(rule: str, n_neurons: int, sim_s: float, reps: int) -> dict:
    """Best-of-``reps`` wall and CPU seconds of ``sim_s`` simulated seconds of one rule's network."""
    net, _ = build(rule, n_neurons, seed=0, learn_s=1e9)  # learning on throughout
    walls, cpus = [], []
    with nengo.Simulator(net, progress_bar=False) as sim:
        sim.run(0.1)  # first steps: caches, lazy allocations
        for _ in range(reps):
            w, c = time.perf_counter(), time.process_time()
            sim.run(sim_s)
            walls.append(time.perf_counter() - w)
            cpus.append(time.process_time() - c)
    wall, cpu = min(walls), min(cpus)
    return {
        "rule": rule,
        "wall_s": wall,
        "cpu_s": cpu,
        "sim_s_per_wall_s": sim_s / wall,
        "sim_s_per_cpu_s": sim_s / cpu,
    }


def main() -> None:
    """Time every rule, print a table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--neurons", type=int, default=100)
    parser.add_argument("--sim-s", type=float, default=10.0, help="simulated seconds per timed run")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    rows = [time_rule(rule, args.neurons, args.sim_s, args.reps) for rule in RULES]
    pes = next(r for r in rows if r["rule"] == "pes")
    print(f"{args.neurons} LIF neurons, dt 1 ms, {args.sim_s:g} simulated s, best of {args.reps}")
    print(f"{'rule':10s} {'sim s/wall s':>13s} {'sim s/CPU s':>12s} {'cost vs PES':>12s}")
    for r in rows:
        r["cost_vs_pes"] = pes["sim_s_per_wall_s"] / r["sim_s_per_wall_s"]
        r["cost_vs_pes_cpu"] = pes["sim_s_per_cpu_s"] / r["sim_s_per_cpu_s"]
        print(f"{r['rule']:10s} {r['sim_s_per_wall_s']:13.1f} {r['sim_s_per_cpu_s']:12.1f} {r['cost_vs_pes']:11.2f}x")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"neurons": args.neurons, "sim_s": args.sim_s, "reps": args.reps, "rows": rows, **provenance()},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
