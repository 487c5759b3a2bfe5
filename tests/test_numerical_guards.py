"""Numerical guard rails: divergence is caught in the step where it happens, named, and never saved.

Oracles: NumPy's float64 Cholesky and eigenvalues say whether a covariance is positive definite;
the checkpoints left on disk are read back and every array checked for finiteness.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import predcode.validation as validation
from predcode import GNCN, GNCNConfig, make_trainer, pad_batch
from predcode.experiments.checkpoint import load_checkpoint, save_checkpoint
from predcode.experiments.train import describe_nonfinite, train
from predcode.learning.covariance import SIGMA_FLOOR_JITTER

CONFIG = GNCNConfig(kind="gncn_t1_sigma", x_dim=16, z_dims=(8, 8), K=5)


def _params(model: GNCN, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in model.param_shapes().items():
        if name.startswith(("Sigma", "Prec")):
            params[name] = np.eye(shape[0], dtype=np.float32)
        else:
            params[name] = (0.05 * rng.standard_normal(shape)).astype(np.float32)
    return params


def _indefinite(n: int) -> np.ndarray:
    """Unit diagonal, off-diagonal 3: finite, symmetric, but with a negative eigenvalue 1 - 3 = -2."""
    return (np.full((n, n), 3.0) - 2.0 * np.eye(n)).astype(np.float32)


def _x(n: int, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 16)) < 0.4).astype(np.float32)


def test_a_non_positive_definite_sigma_is_caught_in_the_step_that_makes_it_and_named():
    model = GNCN(CONFIG)
    params = {**_params(model), "Sigma1": _indefinite(8)}
    # Oracle: the matrix the legacy precision factorises (floored diagonal, jitter) is not PD.
    floored = np.maximum(1.0, np.diag(params["Sigma1"])) * np.eye(8) + params["Sigma1"] * (1 - np.eye(8))
    floored = floored + SIGMA_FLOOR_JITTER
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(floored.astype(np.float64))

    trainer = make_trainer(model)
    xb, w = pad_batch(jnp.asarray(_x(8)), 8)
    new, _, m = trainer.step(params, trainer.init(params), xb, w)
    assert int(m.status) == 1, "the step that made Prec1 NaN must report it"
    assert not np.all(np.isfinite(np.asarray(new["Prec1"]))) and np.all(np.isfinite(np.asarray(new["Sigma1"])))
    message = describe_nonfinite(model, new, m)
    assert "the learned covariance Sigma1 is no longer positive definite" in message
    assert "Prec1 is NaN" in message
    low = float(message.split("symmetric part ")[1].split(")")[0])
    sym = 0.5 * (np.asarray(new["Sigma1"], np.float64) + np.asarray(new["Sigma1"], np.float64).T)
    assert low == pytest.approx(np.linalg.eigvalsh(sym).min(), rel=1e-2, abs=1e-6)


def test_float32_overflow_of_the_covariance_update_is_caught_in_one_step():
    model = GNCN(CONFIG)
    params = _params(model)
    trainer = make_trainer(model, optax.sgd(3e38))  # any non-zero update overflows float32
    xb, w = pad_batch(jnp.asarray(_x(8)), 8)
    new, _, m = trainer.step(params, trainer.init(params), xb, w)
    assert int(m.status) == 1
    assert "Sigma1" in describe_nonfinite(model, new, m)


def test_divergence_in_training_names_epoch_batch_and_sigma_and_leaves_only_finite_checkpoints(tmp_path):
    model = GNCN(CONFIG)
    params = {**_params(model), "Sigma1": _indefinite(8)}
    saved = []

    def save_like_fit(record, state):  # predcode fit saves after every finished epoch, as here
        stem = tmp_path / f"state{record.epoch}"
        save_checkpoint(stem, {k: np.asarray(v) for k, v in state.params.items()}, {"epoch": record.epoch})
        saved.append(stem)

    with pytest.raises(
        FloatingPointError,
        match=r"epoch 1, batch 1 of 3: the learned covariance Sigma1 is no "
        r"longer positive definite",
    ) as info:
        train(model, _x(24), _x(8, seed=2), epochs=2, batch_size=8, params=params, on_epoch=save_like_fit)
    assert "the best checkpoint on disk is intact" in str(info.value)
    assert [p.name for p in saved] == ["state0"], "nothing is saved after the diverging step"
    for stem in saved:
        arrays, _ = load_checkpoint(stem)
        assert all(np.all(np.isfinite(a)) for a in arrays.values())


def test_non_finite_weights_cannot_be_saved_even_by_mistake(tmp_path):
    w = np.ones((4, 4), np.float32)
    w[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"array 'W1': expected finite values, got 0 NaN and 1 infinite"):
        save_checkpoint(tmp_path / "best", {"W1": w}, {})
    assert list(tmp_path.iterdir()) == []
    save_checkpoint(tmp_path / "raw", {"W1": w}, {}, allow_nonfinite=True)  # on purpose: allowed
    assert np.isinf(load_checkpoint(tmp_path / "raw")[0]["W1"][0, 0])


def test_value_checks_run_before_the_batch_loop_not_once_per_batch(monkeypatch):
    model = GNCN(CONFIG)
    calls, seen_at_batch = [], []
    real = validation._stats
    monkeypatch.setattr(validation, "_stats", lambda x: (calls.append(np.shape(x)), real(x))[1])
    train(
        model,
        _x(48),
        _x(8, seed=2),
        epochs=1,
        batch_size=8,
        params=_params(model),
        on_batch=lambda b, n, bce, tod: seen_at_batch.append(len(calls)),
    )
    assert len(seen_at_batch) == 6 and calls[:2] == [(48, 16), (8, 16)]  # x_train, x_val checked first
    assert len(set(seen_at_batch)) == 1, f"value checks ran inside the batch loop: {seen_at_batch}"


def test_under_jit_the_checks_are_static_and_still_catch_a_wrong_shape():
    model = GNCN(CONFIG)
    params = {k: jnp.asarray(v) for k, v in _params(model).items()}
    energy = jax.jit(lambda p, x: model.settle(p, x).energy[-1])
    assert np.isfinite(float(energy(params, jnp.asarray(_x(4)))))
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, 16\), got shape \(4, 15\)"):
        energy(params, jnp.zeros((4, 15)))
    trainer = make_trainer(model)
    assert hasattr(trainer.step.unchecked, "lower") and hasattr(trainer.step, "lower")
