"""Trials vmapped in one jitted step equal sequential training, early-stopped trials stay frozen."""

import copy

import jax
import numpy as np
import pytest

from predcode.experiments.train import train
from predcode.experiments.trials import parallel_trials, train_trials, trial_bytes
from predcode.models.gncn import GNCN, GNCNConfig

MODEL = GNCN(GNCNConfig(kind="gncn_pdh", x_dim=64, z_dims=(24, 24, 36), K=8))
X = (np.random.default_rng(0).random((150, 64)) < 0.3).astype(np.float32)
X_TR, X_VAL = X[:110], X[110:]  # 110 = 3 * 32 + 14: a padded last batch


def _assert_close(a, b, what):
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=2e-4, atol=2e-6, err_msg=f"{what}:{name}")


@pytest.mark.slow
def test_vmapped_trials_equal_sequential_trials_with_one_stopping_early_and_one_resumed():
    kw = dict(epochs=4, batch_size=32, eval_batch_size=40, patience=1)
    # Trial 0 resumes after epoch 1 with a best BCE it can never beat: it stops after epoch 2
    # (patience 1) while trial 1 starts fresh and trains on, so the two are out of step twice.
    saved = train(MODEL, X_TR, X_VAL, seed=3, **{**kw, "epochs": 1})
    saved.best_val_bce, saved.best_epoch = 0.0, 1
    sequential = [
        train(MODEL, X_TR, X_VAL, seed=3, state=copy.deepcopy(saved), **kw),
        train(MODEL, X_TR, X_VAL, seed=4, **kw),
    ]
    seen = []
    together = train_trials(
        MODEL,
        X_TR,
        X_VAL,
        seeds=[3, 4],
        states=[copy.deepcopy(saved), None],
        on_epoch=lambda t, r, s: seen.append((t, r.epoch)),
        **kw,
    )
    assert sequential[0].epoch == 2 and sequential[1].epoch >= 3  # the premise: trial 0 stopped early
    assert [s.epoch for s in together] == [s.epoch for s in sequential]
    assert sorted(seen) == sorted([(0, 2)] + [(1, e) for e in range(sequential[1].epoch + 1)])
    for t, (want, got) in enumerate(zip(sequential, together)):
        _assert_close(want.params, got.params, f"trial {t} params")
        _assert_close(want.best_params, got.best_params, f"trial {t} best")
        assert got.best_epoch == want.best_epoch
        for jax_leaf, ref_leaf in zip(jax.tree.leaves(got.opt_state), jax.tree.leaves(want.opt_state)):
            np.testing.assert_allclose(jax_leaf, ref_leaf, rtol=2e-4, atol=1e-7)
        rows = lambda s: np.array([[r.train_bce, r.train_tod, r.val_bce, r.val_tod] for r in [s.initial, *s.history]])
        np.testing.assert_allclose(rows(got), rows(want), rtol=1e-5)


def test_parallel_trials_is_bounded_by_memory_and_the_limit():
    assert trial_bytes(MODEL, 32) > 4 * sum(int(np.prod(s)) for s in MODEL.param_shapes().values())
    assert parallel_trials(MODEL, 32, n_trials=4) == 4
    assert parallel_trials(MODEL, 32, n_trials=4, limit=3) == 3
    huge = GNCN(GNCNConfig(kind="gncn_t1", x_dim=784, z_dims=(100_000, 100_000)))  # 40 GB of weights
    assert parallel_trials(huge, 512, n_trials=4) == 1


def test_bad_trial_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="seeds: expected at least one seed"):
        train_trials(MODEL, X_TR, X_VAL, seeds=[], epochs=1, batch_size=32)
    with pytest.raises(ValueError, match="states: expected one state"):
        train_trials(MODEL, X_TR, X_VAL, seeds=[1, 2], states=[None], epochs=1, batch_size=32)


# ----- predcode fit with trials vmapped together ----------------------------------------------

FIT_TOML = """
[model]
kind = "gncn_pdh"
z_dims = [36, 36, 36]
K = {K}
[data]
dataset = "mnist"
n_train = {n_train}
n_val = 100
[train]
batch_size = 100
eval_batch_size = 100
epochs = {epochs}
patience = 10
seed = 3
parallel_trials = {parallel}
"""


def _fit_config(tmp_path, name, parallel, K=5, n_train=300, epochs=2):
    path = tmp_path / f"{name}.toml"
    path.write_text(FIT_TOML.format(K=K, n_train=n_train, epochs=epochs, parallel=parallel))
    return path


@pytest.mark.slow
def test_fit_with_vmapped_trials_matches_fit_with_sequential_trials(tmp_path):
    from predcode.experiments.checkpoint import load_checkpoint
    from predcode.experiments.config import load_config
    from predcode.experiments.fit import fit

    runs = {}
    for parallel in ('"auto"', "1"):
        cfg = load_config(_fit_config(tmp_path, f"p{parallel.strip(chr(34))}", parallel))
        out = tmp_path / f"run_{parallel.strip(chr(34))}"
        runs[parallel] = (out, fit(cfg, out, n_trials=2))
    (vmapped, s_v), (sequential, s_s) = runs['"auto"'], runs["1"]
    for t in (0, 1):
        for name in (f"state{t}", f"best{t}"):
            want, meta_want = load_checkpoint(sequential / name)
            got, meta_got = load_checkpoint(vmapped / name)
            assert meta_got["epoch"] == meta_want["epoch"]
            for key in want:
                np.testing.assert_allclose(got[key], want[key], rtol=2e-4, atol=2e-6, err_msg=f"{name}:{key}")
    np.testing.assert_allclose(s_v["best_val_bce_mean"], s_s["best_val_bce_mean"], rtol=1e-5)
    np.testing.assert_allclose(s_v["best_val_bce_std"], s_s["best_val_bce_std"], rtol=1e-2, atol=1e-4)


@pytest.mark.slow
def test_fit_with_vmapped_trials_killed_mid_epoch_then_resumed_ends_with_the_same_weights(tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from predcode.experiments.checkpoint import load_checkpoint

    cfg = _fit_config(tmp_path, "kill", '"auto"', K=10, n_train=1000, epochs=6)
    cmd = [sys.executable, "-m", "predcode", "fit", "--config", str(cfg), "--n-trials", "2", "--quiet"]
    env = {**os.environ, "COLUMNS": "200"}
    reference = tmp_path / "uninterrupted"
    assert subprocess.run([*cmd, "--out", str(reference)], env=env, capture_output=True).returncode == 0
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([*cmd, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until epoch 1 of trial 1 is saved, then kill inside epoch 2
        state = out / "state1.json"
        if state.exists() and json.loads(state.read_text()).get("epoch", 0) >= 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = [json.loads((out / f"state{t}.json").read_text())["epoch"] for t in (0, 1)]
    assert min(saved) >= 1 and max(saved) < 6, f"the kill should land before the end, states say {saved}"
    resumed = subprocess.run([*cmd, "--out", str(out), "--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    for t in (0, 1):
        for name in (f"state{t}", f"best{t}"):
            want, _ = load_checkpoint(reference / name)
            got, _ = load_checkpoint(out / name)
            for key in want:
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name}:{key}")
        np.testing.assert_array_equal(np.load(out / f"vLx{t}.npy"), np.load(reference / f"vLx{t}.npy"))


@pytest.mark.slow
def test_vmapped_step_of_the_full_size_mnist_model_finishes():
    """Regression: XLA:CPU deadlocked on batched LAPACK calls in the vmapped 784-360-360-360 PDH step."""
    import subprocess
    import sys

    code = """
import jax, jax.numpy as jnp, numpy as np
from predcode.experiments.trials import stack_trials, vmapped_steps
from predcode.learning.step import make_trainer
from predcode.models.gncn import GNCN, GNCNConfig
model = GNCN(GNCNConfig(kind="gncn_pdh", K=2))
trainer = make_trainer(model)
step, _ = vmapped_steps(trainer)
ps = [model.init(jax.random.key(s)) for s in range(2)]
x = jnp.asarray((np.random.default_rng(0).random((2, 64, 784)) < 0.2).astype(np.float32))
out = step(stack_trials(ps), stack_trials([trainer.init(p) for p in ps]), x, jnp.ones((2, 64)), jnp.ones(2, bool))
print("status", np.asarray(out[2].status).tolist())
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0 and "status [0, 0]" in proc.stdout, proc.stdout + proc.stderr
