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


def test_vmapped_trials_equal_sequential_trials_with_one_stopping_early_and_one_resumed():
    kw = dict(epochs=4, batch_size=32, eval_batch_size=40, patience=1)
    # Trial 0 resumes after epoch 1 with a best BCE it can never beat: it stops after epoch 2
    # (patience 1) while trial 1 starts fresh and trains on, so the two are out of step twice.
    saved = train(MODEL, X_TR, X_VAL, seed=3, **{**kw, "epochs": 1})
    saved.best_val_bce, saved.best_epoch = 0.0, 1
    sequential = [train(MODEL, X_TR, X_VAL, seed=3, state=copy.deepcopy(saved), **kw),
                  train(MODEL, X_TR, X_VAL, seed=4, **kw)]
    seen = []
    together = train_trials(MODEL, X_TR, X_VAL, seeds=[3, 4], states=[copy.deepcopy(saved), None],
                            on_epoch=lambda t, r, s: seen.append((t, r.epoch)), **kw)
    assert sequential[0].epoch == 2 and sequential[1].epoch >= 3  # the premise: trial 0 stopped early
    assert [s.epoch for s in together] == [s.epoch for s in sequential]
    assert sorted(seen) == sorted([(0, 2)] + [(1, e) for e in range(sequential[1].epoch + 1)])
    for t, (want, got) in enumerate(zip(sequential, together)):
        _assert_close(want.params, got.params, f"trial {t} params")
        _assert_close(want.best_params, got.best_params, f"trial {t} best")
        assert got.best_epoch == want.best_epoch
        for jax_leaf, ref_leaf in zip(jax.tree.leaves(got.opt_state), jax.tree.leaves(want.opt_state)):
            np.testing.assert_allclose(jax_leaf, ref_leaf, rtol=2e-4, atol=1e-7)
        rows = lambda s: np.array([[r.train_bce, r.train_tod, r.val_bce, r.val_tod]  # noqa: E731
                                   for r in [s.initial, *s.history]])
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
