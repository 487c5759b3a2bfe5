"""predcode's GNCN museum reproduces the golden outputs of the real legacy ngc-learn v0.5.0 code."""

import jax.numpy as jnp
import numpy as np
import pytest

from predcode.learning.step import make_trainer
from predcode.models.gncn import GNCN, GNCNConfig, bce, total_discrepancy
from test_reference64_vs_legacy import FIXTURE_KINDS, _load

NAMES = {"S2": "M2", "S3": "M3", "Sigma_e1": "Sigma1", "Sigma_e2": "Sigma2", "Prec_e1": "Prec1", "Prec_e2": "Prec2"}
RTOL, ATOL = 1e-4, 1e-5


def _params(fx, prefix):
    return {NAMES.get(k[len(prefix) :], k[len(prefix) :]): jnp.asarray(fx[k]) for k in fx if k.startswith(prefix)}


def _model(kind):
    return GNCN(GNCNConfig(kind=kind, z_dims=(24, 24, 36)))


def _check_settle(model, result, fx, prefix):
    z, mu, sig, e = result.states, result.predictions, result.signals, result.errors
    phi = np.tanh if model.config.phi == "tanh" else (lambda a: np.maximum(a, 0))
    for l in range(3):
        np.testing.assert_allclose(z[l], fx[f"{prefix}z{l + 1}_z"], RTOL, ATOL, err_msg=f"z{l + 1}")
        np.testing.assert_allclose(phi(np.asarray(z[l])), fx[f"{prefix}z{l + 1}_phi"], RTOL, ATOL)
        np.testing.assert_allclose(mu[l], fx[f"{prefix}mu{l}_phi"], RTOL, ATOL, err_msg=f"mu{l}")
        np.testing.assert_allclose(sig[l], fx[f"{prefix}e{l}_phi"], RTOL, ATOL, err_msg=f"e{l}")
        np.testing.assert_allclose(np.sum(np.square(e[l])), fx[f"{prefix}e{l}_L"], rtol=RTOL)


@pytest.fixture(scope="module", params=FIXTURE_KINDS)
def case(request):
    fx = _load(request.param)
    model = _model(request.param)
    assert set(model.learnable_names()) | set(model.fixed_names()) == set(_params(fx, "param0_"))
    return model, fx


def test_first_settle_matches_legacy_states_predictions_errors_and_metrics(case):
    model, fx = case
    x = jnp.asarray(fx["x"])
    result = model.settle(_params(fx, "param0_"), x)
    _check_settle(model, result, fx, "settle0_")
    # Legacy reports ToD with a minus sign; predcode reports the positive discrepancy.
    np.testing.assert_allclose(total_discrepancy(result.errors), -fx["tod0"], rtol=1e-5)
    np.testing.assert_allclose(bce(x, result.predictions[0]), fx["bce0"], rtol=1e-5)
    assert int(result.status) == 0 and result.energy.shape == (50,)


def test_hebbian_updates_match_legacy_deltas(case):
    model, fx = case
    params = _params(fx, "param0_")
    grads = model.calc_updates(params, model.settle(params, jnp.asarray(fx["x"])))
    assert set(grads) == set(model.learnable_names())
    for name, g in grads.items():
        legacy = {v: k for k, v in NAMES.items()}.get(name, name)
        np.testing.assert_allclose(g, fx[f"delta_{legacy}"], rtol=RTOL, atol=1e-6, err_msg=name)


def test_one_training_step_then_eager_settle_match_legacy(case):
    model, fx = case
    x = jnp.asarray(fx["x"])
    trainer = make_trainer(model)
    params0 = _params(fx, "param0_")
    opt_state = trainer.init(params0)
    params1, _, metrics = trainer.step(dict(params0), opt_state, x, jnp.ones(8))
    np.testing.assert_allclose(metrics.bce, fx["bce0_train"], rtol=1e-5)
    for name, want in _params(fx, "param1_").items():
        np.testing.assert_allclose(params1[name], want, rtol=RTOL, atol=1e-6, err_msg=name)
    # predcode uses the current precision, as legacy's eager mode does (graph mode froze it).
    result = model.settle(params1, x)
    _check_settle(model, result, fx, "settle1e_")
    np.testing.assert_allclose(total_discrepancy(result.errors), -fx["tod1_eager"], rtol=1e-5)
    np.testing.assert_allclose(bce(x, result.predictions[0]), fx["bce1_eager"], rtol=1e-5)


def test_project_matches_legacy_ancestral_samples(case):
    model, fx = case
    z = jnp.asarray(fx["z_sample"])
    np.testing.assert_allclose(model.project(_params(fx, "param0_"), z), fx["proj0_x"], RTOL, ATOL)
    np.testing.assert_allclose(model.project(_params(fx, "param1_"), z), fx["proj1_x"], RTOL, ATOL)


@pytest.mark.parametrize("kind", [k for k in FIXTURE_KINDS if k != "gncn_t1"])
def test_legacy_frozen_precision_reproduces_legacy_graph_mode_second_settle(kind):
    # Legacy >= 0.2 traced the settling graph once and kept the first precision in it (GNCN.md):
    # with legacy_frozen_precision the second settle matches legacy's graph mode, not its eager mode.
    fx = _load(kind)
    model = GNCN(GNCNConfig(kind=kind, z_dims=(24, 24, 36), legacy_frozen_precision=True))
    x = jnp.asarray(fx["x"])
    trainer = make_trainer(model)
    params0 = _params(fx, "param0_")
    params1, _, _ = trainer.step(dict(params0), trainer.init(params0), x, jnp.ones(8))
    for name, want in _params(fx, "param1_").items():
        if name.startswith("Prec"):  # the stored variable moved on; the graph's copy did not
            np.testing.assert_array_equal(params1[name], params0[name])
            assert not np.allclose(want, params0[name], rtol=RTOL, atol=ATOL)
        else:
            np.testing.assert_allclose(params1[name], want, rtol=RTOL, atol=1e-6, err_msg=name)
    result = model.settle(params1, x)
    _check_settle(model, result, fx, "settle1g_")
    np.testing.assert_allclose(total_discrepancy(result.errors), -fx["tod1"], rtol=1e-5)
    np.testing.assert_allclose(bce(x, result.predictions[0]), fx["bce1"], rtol=1e-5)
