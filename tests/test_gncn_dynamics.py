"""GNCN settling and learning checked against oracles: a float64 NumPy reference, jax.grad of the
energy, a closed-form posterior, and the structure GNCN.md prescribes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gncn_reference64 as ref
from predcode.learning.step import make_trainer
from predcode.models.gncn import GNCN, GNCNConfig, lateral_matrix

KINDS = ("gncn_t1", "gncn_t1_sigma", "gncn_t2_lsigma", "gncn_pdh")
DIMS = (36, 36, 36)


def _random_problem(kind, seed=0, batch=16):
    model = GNCN(GNCNConfig(kind=kind, x_dim=100, z_dims=DIMS))
    params = model.init(jax.random.key(seed))
    # Stronger weights than the default 0.05 so that 50 steps move the states far from zero.
    params = model.apply_constraints({k: (v * 8 if k[0] in "WME" else v) for k, v in params.items()})
    x = (np.random.default_rng(seed).random((batch, 100)) < 0.3).astype(np.float32)
    return model, params, x


def _np64(params):
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def _rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_settling_matches_float64_reference_over_50_steps(kind):
    model, params, x = _random_problem(kind)
    result = model.settle(params, jnp.asarray(x))
    want = ref.settle64(kind, _np64(params), x.astype(np.float64), K=50)
    assert np.max(np.abs(want["z1"])) > 0.05, "the test problem should move the states"
    for l in range(3):
        assert _rel_err(result.states[l], want[f"z{l + 1}"]) < 1e-4, f"z{l + 1}"
        assert _rel_err(result.predictions[l], want[f"mu{l}"]) < 1e-4, f"mu{l}"
        assert _rel_err(result.errors[l], want[f"e{l}"]) < 1e-4, f"e{l}"
    for l in (1, 2):
        assert _rel_err(result.signals[l], want[f"et{l}"]) < 1e-4, f"whitened e{l}"


@pytest.mark.parametrize("kind", KINDS)
def test_one_weight_update_matches_float64_reference(kind):
    model, params, x = _random_problem(kind, seed=1)
    trainer = make_trainer(model)
    new, _, _ = trainer.step(dict(params), trainer.init(params), jnp.asarray(x), jnp.ones(len(x)))
    p64 = _np64(params)
    settled = ref.settle64(kind, p64, x.astype(np.float64), K=50)
    grads = ref.updates64(kind, p64, settled)
    got_grads = model.calc_updates(params, model.settle(params, jnp.asarray(x)))
    for name, g in grads.items():
        assert _rel_err(got_grads[name], g) < 1e-4, f"update of {name}"
    want, _, _ = ref.adam_constraints_step64(kind, p64, grads, t=1)
    for name in want:
        # Adam's first step moves each entry by about lr * sign(g): compare the moves.
        np.testing.assert_allclose(new[name], want[name], rtol=1e-4, atol=2e-6, err_msg=name)


def test_t1_drive_is_minus_the_gradient_of_its_energy():
    model = GNCN(GNCNConfig(kind="gncn_t1", x_dim=30, z_dims=(12, 10, 8)))
    params = model.init(jax.random.key(3))
    params = {k: v * 6 for k, v in params.items()}
    c = model.config
    key = jax.random.key(4)
    x = (jax.random.uniform(key, (5, 30)) < 0.5).astype(jnp.float32)
    states = tuple(0.3 * jax.random.normal(jax.random.fold_in(key, i), (5, d)) for i, d in enumerate(c.z_dims))

    def energy(states):
        z1, z2, z3 = states
        logits = jnp.tanh(z1) @ params["W1"]
        bce = jnp.sum(jax.nn.softplus(logits) - x * logits)  # = BCE(x, sigmoid(logits))
        e1 = z1 - jnp.tanh(z2) @ params["W2"]
        e2 = z2 - jnp.tanh(z3) @ params["W3"]
        reg = sum(c.lmbda * jnp.sum(jnp.abs(z)) + c.leak / 2 * jnp.sum(z * z) for z in states)
        return bce + 0.5 * jnp.sum(e1**2) + 0.5 * jnp.sum(e2**2) + reg

    _, _, sigs = model._predict(params, x, None, states)
    drive = model._drive(params, states, sigs)
    grad = jax.grad(energy)(states)
    for d, g in zip(drive, grad):
        np.testing.assert_allclose(d, -g, rtol=1e-5, atol=1e-6)


def test_linear_gaussian_layer_settles_to_closed_form_posterior_mean():
    # x = z W + noise, z ~ N(0, I/leak): the posterior mean is x W^T (W W^T + leak I)^{-1}.
    leak = 0.5
    model = GNCN(
        GNCNConfig(
            kind="gncn_t1",
            x_dim=20,
            z_dims=(6,),
            phi="identity",
            g_out="identity",
            lmbda=0.0,
            leak=leak,
            K=400,
            beta=0.1,
        )
    )
    W = np.random.default_rng(0).normal(0, 0.3, (6, 20)).astype(np.float32)
    x = np.random.default_rng(1).normal(0, 1, (4, 20)).astype(np.float32)
    result = model.settle({"W1": jnp.asarray(W)}, jnp.asarray(x))
    W64 = W.astype(np.float64)
    posterior = x @ W64.T @ np.linalg.inv(W64 @ W64.T + leak * np.eye(6))
    np.testing.assert_allclose(result.states[0], posterior, rtol=1e-4, atol=1e-5)
    assert np.all(np.diff(np.asarray(result.energy)[1:]) <= 1e-4), "energy should not rise"


@pytest.mark.parametrize("kind", KINDS)
def test_constraint_leaves_every_receiving_unit_with_norm_at_most_one(kind):
    model = GNCN(GNCNConfig(kind=kind, x_dim=50, z_dims=(24, 24, 36)))
    params = model.init(jax.random.key(0))
    blown = model.apply_constraints({k: v * 30 for k, v in params.items()})
    for name in model.learnable_names():
        norms = np.linalg.norm(np.asarray(blown[name]), axis=0)
        assert np.all(norms <= 1 + 1e-5), name
        assert np.max(norms) > 0.99, f"{name}: columns outside the ball end on it"
    assert all(np.array_equal(blown[f"V{l}"], params[f"V{l}"] * 30) for l in (1, 2, 3) if f"V{l}" in params), (
        "V is fixed and never clipped"
    )


def test_lateral_matrix_has_the_group_structure_of_gncn_md():
    model = GNCN(GNCNConfig(kind="gncn_pdh"))
    params = model.init(jax.random.key(0))
    for l, group in ((1, 12), (2, 12), (3, 18)):
        V = np.asarray(params[f"V{l}"])
        assert V.shape == (360, 360)
        np.testing.assert_allclose(np.diag(V), -0.15)
        i, j = np.meshgrid(np.arange(360), np.arange(360), indexing="ij")
        same = (i // group == j // group) & (i != j)
        np.testing.assert_allclose(V[same], 0.1)
        assert np.all(V[~same & (i != j)] == 0)
        assert same.sum() == 360 * (group - 1)
    np.testing.assert_array_equal(lateral_matrix(36, 18, 0.15, 0.1)[0, :3], np.float32([-0.15, 0.1, 0.1]))


def test_first_step_leaves_states_at_zero_and_predicts_one_half():
    model = GNCN(GNCNConfig(kind="gncn_t1_sigma", x_dim=40, z_dims=(12, 12, 12)))
    params = model.init(jax.random.key(0))
    x = jnp.ones((3, 40))
    result = model.settle(params, x, steps=1)
    assert all(float(jnp.abs(z).max()) == 0.0 for z in result.states)
    np.testing.assert_allclose(result.predictions[0], 0.5)
    moved = model.settle(params, x, steps=2)
    assert float(jnp.abs(moved.states[0]).max()) > 0, "relu'(0) = 1 lets t1-Sigma leave zero"


def test_bad_configuration_is_refused_with_the_parameter_named():
    with pytest.raises(ValueError, match="kind"):
        GNCNConfig(kind="gncn_t3")
    with pytest.raises(ValueError, match=r"K: expected an integer in \[1, 100000\], got 0"):
        GNCNConfig(K=0)
    with pytest.raises(ValueError, match="beta"):
        GNCNConfig(beta=0)
    with pytest.raises(ValueError, match=r"z_dims\[0\].*multiple of n_group=12.*100"):
        GNCNConfig(kind="gncn_pdh", z_dims=(100, 360, 360))
    with pytest.raises(ValueError, match="phi"):
        GNCNConfig(phi="swish")


@pytest.mark.parametrize("kind", ["gncn_t2_lsigma", "gncn_pdh"])
def test_e_init_transpose_starts_the_feedback_as_the_transposed_weights(kind, monkeypatch):
    key = jax.random.key(3)
    # the draw before the column-norm clip (which treats W and E apart)
    monkeypatch.setattr(GNCN, "apply_constraints", lambda self, p: p)
    models = {e: GNCN(GNCNConfig(kind=kind, e_init=e)) for e in ("transpose", "random")}
    raw = {}
    for e, m in models.items():
        raw[e] = m.init(key)
    for l in range(1, 4):
        np.testing.assert_array_equal(np.asarray(raw["transpose"][f"E{l}"]), np.asarray(raw["transpose"][f"W{l}"]).T)
        np.testing.assert_array_equal(np.asarray(raw["transpose"][f"W{l}"]), np.asarray(raw["random"][f"W{l}"]))
        assert not np.allclose(np.asarray(raw["random"][f"E{l}"]), np.asarray(raw["random"][f"W{l}"]).T)
    with pytest.raises(ValueError, match="e_init"):
        GNCNConfig(kind=kind, e_init="tied")


@pytest.mark.parametrize("kind", ["gncn_t2_lsigma", "gncn_pdh"])
def test_grouped_lateral_form_matches_the_float64_reference_with_the_matrix(kind):
    # the reference multiplies by the stored V; the grouped form never reads it
    _, params, x = _random_problem(kind, seed=2)
    model = GNCN(GNCNConfig(kind=kind, x_dim=100, z_dims=DIMS, lateral_form="grouped"))
    result = model.settle(params, jnp.asarray(x))
    want = ref.settle64(kind, _np64(params), x.astype(np.float64), K=50)
    for l in range(3):
        assert _rel_err(result.states[l], want[f"z{l + 1}"]) < 1e-4, f"z{l + 1}"
    p = np.abs(np.random.default_rng(0).standard_normal((4, 36)))
    for l, group in ((1, 12), (3, 18)):
        v = lateral_matrix(36, group, model.config.alpha_scale, model.config.beta_scale).astype(np.float64)
        got = model._lateral({}, l, jnp.asarray(p, jnp.float32))
        np.testing.assert_allclose(np.asarray(got), p @ v, rtol=1e-5, atol=1e-6)


def test_grouped_lateral_form_refuses_a_custom_lateral_matrix():
    model = GNCN(GNCNConfig(kind="gncn_pdh", x_dim=100, z_dims=DIMS, lateral_form="grouped"))
    params = model.init(jax.random.key(0))
    model.check_params(params)
    bad = {**params, "V2": params["V2"] * 2}
    with pytest.raises(ValueError, match=r"params\['V2'\]: expected the fixed lateral matrix .* \"grouped\""):
        model.check_params(bad)
    GNCN(GNCNConfig(kind="gncn_pdh", x_dim=100, z_dims=DIMS)).check_params(bad)  # "matrix" takes any V
    with pytest.raises(ValueError, match="lateral_form"):
        GNCNConfig(lateral_form="sparse")


def _zeros_like_v(p):
    return {f"V{l}": np.zeros((DIMS[l - 1], DIMS[l - 1])) for l in (1, 2, 3)}


def _transposed_w(p):
    return {f"E{l}": p[f"W{l}"].T for l in (1, 2, 3)}


def _identity_prec(p):
    return {f"Prec{l}": np.eye(DIMS[l - 1]) for l in (1, 2)}


# An ablated model equals a museum model of the float64 reference with the switched-off part
# neutralised: no lateral = V of zeros; tied feedback = E set to W^T; no Sigma = identity precision;
# PDH without skip = GNCN-t2-LSigma; GNCN-t2-LSigma with skip = GNCN-PDH.
ABLATIONS = [
    ("gncn_pdh", {"lateral": False}, "gncn_pdh", _zeros_like_v),
    ("gncn_pdh", {"tied_feedback": True}, "gncn_pdh", _transposed_w),
    ("gncn_pdh", {"learn_sigma": False}, "gncn_pdh", _identity_prec),
    ("gncn_pdh", {"skip": False}, "gncn_t2_lsigma", lambda p: {}),
    ("gncn_t2_lsigma", {"skip": True}, "gncn_pdh", lambda p: {}),
]


@pytest.mark.parametrize("kind, switch, oracle_kind, fill", ABLATIONS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_ablation_switch_matches_the_float64_reference_of_the_equivalent_model(kind, switch, oracle_kind, fill):
    model = GNCN(GNCNConfig(kind=kind, x_dim=100, z_dims=DIMS, **switch))
    params = model.init(jax.random.key(4))
    params = model.apply_constraints({k: (v * 8 if k[0] in "WME" else v) for k, v in params.items()})
    name, value = next(iter(switch.items()))
    assert model.config.flags[name] is value
    x = (np.random.default_rng(4).random((16, 100)) < 0.3).astype(np.float32)
    p64 = _np64(params)
    p64.update(fill(p64))
    want = ref.settle64(oracle_kind, p64, x.astype(np.float64), K=50)
    result = model.settle(params, jnp.asarray(x))
    assert np.max(np.abs(want["z1"])) > 0.05, "the test problem should move the states"
    for l in range(3):
        assert _rel_err(result.states[l], want[f"z{l + 1}"]) < 1e-4, f"z{l + 1}"
        assert _rel_err(result.predictions[l], want[f"mu{l}"]) < 1e-4, f"mu{l}"
    # the Hebbian updates of the arrays the ablated model has
    grads = ref.updates64(oracle_kind, p64, want)
    got = model.calc_updates(params, result)
    assert set(got) == set(model.learnable_names())
    for g in got:
        assert _rel_err(got[g], grads[g]) < 1e-4, f"update of {g}"


def test_ablation_switches_drop_or_add_the_arrays_of_the_feature():
    names = lambda **s: set(GNCN(GNCNConfig(kind="gncn_pdh", **s)).param_shapes())
    full = names()
    assert full - names(lateral=False) == {"V1", "V2", "V3"}
    assert full - names(tied_feedback=True) == {"E1", "E2", "E3"}
    assert full - names(learn_sigma=False) == {"Sigma1", "Sigma2", "Prec1", "Prec2"}
    assert full - names(skip=False) == {"M2", "M3"}
    assert names(lateral=None) == full
    assert set(GNCN(GNCNConfig(kind="gncn_t1", lateral=True)).param_shapes()) >= {"V1", "V2", "V3"}
    with pytest.raises(ValueError, match=r"lateral: expected true, false or None .*got 'no'"):
        GNCNConfig(kind="gncn_pdh", lateral="no")
    with pytest.raises(ValueError, match=r"z_dims\[0\].*multiple of n_group"):
        GNCNConfig(kind="gncn_t1", z_dims=(100, 360, 360), lateral=True)
