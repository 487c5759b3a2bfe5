"""Re-probe a general PC run's codes at several evaluation settle lengths (results/pc_mnist).

Usage: .venv/bin/python scripts/pc_probe_sweep.py RUN T1,T2,... N_PER_CLASS

Infers the codes of up to N_PER_CLASS training images a class and of all test images with
T_eval = T for each T, and prints the linear probe's test accuracy (C = 1, as `predcode analyze`),
its training accuracy, and the accuracy at C = 0.1 and C = 10.
"""

import sys
import time

from predcode.experiments.pc_analyze import balanced_indices, load_pc_run, pc_codes
from predcode.experiments.pc_fit import load_pc_data, make_pc_trainer
from predcode.experiments.probes import linear_probe

run, Ts, per = sys.argv[1], [int(t) for t in sys.argv[2].split(",")], int(sys.argv[3])
cfg, net, params = load_pc_run(run, 0)
trainer, data = make_pc_trainer(cfg, net), load_pc_data(cfg)
idx = balanced_indices(data.y_train, per)
for T in Ts:
    t0 = time.time()
    z_train = pc_codes(cfg, trainer, params, data.x_train[idx], T=T)
    z_test = pc_codes(cfg, trainer, params, data.x_test, T=T)
    p = linear_probe(z_train, data.y_train[idx], z_test, data.y_test)
    other = {
        C: 100 - linear_probe(z_train, data.y_train[idx], z_test, data.y_test, C=C)["error_pct"] for C in (0.1, 10.0)
    }
    print(
        f"{run} T={T} n={len(idx)} probe {100 - p['error_pct']:.2f} (train {100 - p['train_error_pct']:.2f}); "
        f"C=0.1 {other[0.1]:.2f}, C=10 {other[10.0]:.2f}; {time.time() - t0:.0f} s",
        flush=True,
    )
