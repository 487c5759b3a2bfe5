"""Credit-assignment rules against oracles: jax.grad, a float64 NumPy FA reference, PC's equilibrium."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from predcode.learning.rules import (
    BackProp,
    DirectFeedbackAlignment,
    FeedbackAlignment,
    PredictiveCoding,
    alignment_angles,
)
from predcode.learning.streaming import make_rule_trainer
from predcode.models.mlp import MLP, Layer


def _net(sizes=(6, 8, 7, 4), activation="tanh", loss="cross_entropy", seed=0):
    model = MLP(sizes, activation=activation, loss=loss)
    params = model.init(jax.random.key(seed), bias=0.1)
    params = jax.tree.map(lambda a: a.astype(jnp.result_type(float)), params)
    k1, k2 = jax.random.split(jax.random.key(seed + 1))
    x = jax.random.normal(k1, (5, sizes[0]))
    if loss == "cross_entropy":
        y = jax.random.randint(k2, (5,), 0, sizes[-1])
    else:
        y = jax.random.normal(k2, (5, sizes[-1]))
    return model, params, x, y


def _max_diff(a, b):
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("loss", ["cross_entropy", "squared_error"])
def test_backprop_rule_is_exactly_jax_grad_of_the_loss(x64, activation, loss):
    model, params, x, y = _net(activation=activation, loss=loss)
    grads, state = BackProp().update(model, params, BackProp().init(model, params), x, y)
    expected = jax.grad(model.loss_fn)(params, x, y)
    assert _max_diff(grads, expected) < 1e-14
    assert state == ()


def test_feedback_alignment_with_transposed_forward_weights_is_backprop(x64):
    model, params, x, y = _net(sizes=(6, 9, 8, 7, 3))
    fa = FeedbackAlignment(feedback=[W.T for W, _ in params[1:]])
    grads, _ = fa.update(model, params, fa.init(model, params), x, y)
    assert _max_diff(grads, jax.grad(model.loss_fn)(params, x, y)) < 1e-14


def test_feedback_alignment_with_transposed_weights_equals_the_backprop_rule_bit_for_bit():
    model, params, x, y = _net(sizes=(6, 9, 8, 7, 3), activation="relu")  # float32
    fa = FeedbackAlignment(feedback=[W.T for W, _ in params[1:]])
    g_fa, _ = fa.update(model, params, fa.init(model, params), x, y)
    g_bp, _ = BackProp().update(model, params, (), x, y)
    assert _max_diff(g_fa, g_bp) == 0.0


def _fa_reference(params, B, x, onehot):
    """float64 NumPy FA for a tanh MLP with softmax cross-entropy (batch mean)."""
    h, zs = [np.asarray(x, np.float64)], []
    for l, (W, b) in enumerate(params):
        z = h[-1] @ np.asarray(W).T + np.asarray(b)
        zs.append(z)
        h.append(z if l == len(params) - 1 else np.tanh(z))
    p = np.exp(zs[-1] - zs[-1].max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = (p - onehot) / len(x)
    out = [None] * len(params)
    for l in range(len(params) - 1, -1, -1):
        out[l] = (delta.T @ h[l], delta.sum(0))
        if l:
            delta = (1 - np.tanh(zs[l - 1]) ** 2) * (delta @ np.asarray(B[l - 1]).T)
    return out


def test_feedback_alignment_matches_float64_numpy_reference_weights_and_biases(x64):
    model, params, x, y = _net(sizes=(6, 9, 8, 3))
    fa = FeedbackAlignment(key=jax.random.key(7))
    state = fa.init(model, params)
    assert [B.shape for B in state.B] == [(9, 8), (8, 3)]  # the shapes of W2^T and W3^T
    grads, state2 = fa.update(model, params, state, x, y)
    ref = _fa_reference(params, state.B, x, np.eye(3)[np.asarray(y)])
    for (gW, gb), (rW, rb) in zip(grads, ref):
        np.testing.assert_allclose(gW, rW, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(gb, rb, rtol=1e-12, atol=1e-15)
        assert np.abs(rb).max() > 0  # biases do learn
    assert state2 is state  # the feedback matrices are fixed


def test_direct_feedback_alignment_on_one_hidden_layer_equals_feedback_alignment(x64):
    model, params, x, y = _net(sizes=(6, 9, 4))
    dfa = DirectFeedbackAlignment(key=jax.random.key(3))
    state = dfa.init(model, params)
    assert [D.shape for D in state.B] == [(9, 4)]
    fa = FeedbackAlignment(feedback=state.B)
    g_dfa, _ = dfa.update(model, params, state, x, y)
    g_fa, _ = fa.update(model, params, fa.init(model, params), x, y)
    assert _max_diff(g_dfa, g_fa) == 0.0


def test_direct_feedback_alignment_sends_the_output_error_to_every_hidden_layer(x64):
    model, params, x, y = _net(sizes=(6, 9, 8, 4))
    dfa = DirectFeedbackAlignment(key=jax.random.key(3))
    D = dfa.init(model, params).B
    grads, _ = dfa.update(model, params, dfa.init(model, params), x, y)
    fw = model.forward(params, x)
    e = (jax.nn.softmax(fw.output) - jax.nn.one_hot(y, 4)) / len(x)
    for l in (1, 2):
        delta = (1 - jnp.tanh(fw.z[l]) ** 2) * (e @ D[l - 1].T)
        np.testing.assert_allclose(grads[l - 1].W, delta.T @ fw.h[l - 1], rtol=1e-12)
        np.testing.assert_allclose(grads[l - 1].b, delta.sum(0), rtol=1e-12)


def test_rules_draw_their_feedback_once_from_the_key():
    model, params, _, _ = _net()
    a = FeedbackAlignment(key=jax.random.key(5)).init(model, params)
    b = FeedbackAlignment(key=5).init(model, params)
    c = FeedbackAlignment(key=6).init(model, params)
    assert _max_diff(a.B, b.B) == 0.0 and _max_diff(a.B, c.B) > 0


def test_predictive_coding_settles_to_the_energy_minimum_and_learns_locally(x64):
    model, params, x, y = _net(sizes=(6, 9, 8, 4), activation="tanh")
    pc = PredictiveCoding(steps=400, inference_rate=0.2)
    states = pc.settle(model, params, x, y)
    # At the minimum every state's energy gradient vanishes: e_l = f'(s_l) * (e_{l+1} W_{l+1}).
    g = jax.grad(lambda s: pc.energy(model, params, s, x, y))(states)
    assert max(float(jnp.max(jnp.abs(gi))) for gi in g) < 1e-8
    # The weight update is local: each layer's own error times its own input (NumPy, by hand).
    grads, _ = pc.update(model, params, (), x, y)
    below = [np.asarray(x)] + [np.tanh(np.asarray(s)) for s in states]
    for l, (W, b) in enumerate(params[:-1]):
        err = np.asarray(states[l]) - (below[l] @ np.asarray(W).T + np.asarray(b))
        np.testing.assert_allclose(grads[l].W, -err.T @ below[l] / len(x), rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(grads[l].b, -err.sum(0) / len(x), rtol=1e-9, atol=1e-14)
    W, b = params[-1]
    logits = below[-1] @ np.asarray(W).T + np.asarray(b)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    e_out = (p - np.eye(4)[np.asarray(y)]) / len(x)
    np.testing.assert_allclose(grads[-1].W, e_out.T @ below[-1], rtol=1e-9, atol=1e-14)


def test_predictive_coding_approaches_backprop_as_the_output_is_weakly_clamped(x64):
    # Whittington & Bogacz (2017): as the output precision beta -> 0, PC's settled update -> backprop's.
    model, params, x, y = _net(sizes=(6, 9, 8, 4), loss="squared_error")
    g_bp = jax.grad(model.loss_fn)(params, x, y)
    scale = max(float(jnp.max(jnp.abs(v))) for v in jax.tree.leaves(g_bp))
    errors = []
    for beta in (1.0, 1e-2, 1e-4):
        g_pc, _ = PredictiveCoding(steps=300, inference_rate=0.2, output_precision=beta).update(model, params, (), x, y)
        errors.append(_max_diff(g_pc, g_bp) / scale)
    assert errors[0] > 0.05  # with a unit-precision output, PC is not backprop
    assert errors[1] < 0.05 and errors[2] < 5e-4 and errors[2] < errors[1] / 50, errors


def test_predictive_coding_with_no_inference_steps_only_trains_the_output_layer(x64):
    model, params, x, y = _net()
    grads, _ = PredictiveCoding(steps=0).update(model, params, (), x, y)
    bp = jax.grad(model.loss_fn)(params, x, y)
    assert _max_diff(grads[-1], bp[-1]) < 1e-14
    assert all(float(jnp.max(jnp.abs(v))) == 0.0 for v in jax.tree.leaves(grads[:-1]))


def test_alignment_angles_against_numpy():
    rng = np.random.default_rng(0)
    a = (Layer(rng.normal(size=(3, 4)), rng.normal(size=3)),)
    b = (Layer(rng.normal(size=(3, 4)), rng.normal(size=3)),)
    u = np.concatenate([a[0].W.ravel(), a[0].b])
    v = np.concatenate([b[0].W.ravel(), b[0].b])
    expected = np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))
    np.testing.assert_allclose(alignment_angles(a, b), [expected], rtol=1e-5)
    np.testing.assert_allclose(alignment_angles(a, a), [0.0], atol=0.1)
    np.testing.assert_allclose(alignment_angles(a, jax.tree.map(lambda t: -t, a)), [180.0], atol=0.1)


@pytest.mark.parametrize(
    "rule",
    [BackProp(), FeedbackAlignment(key=1), DirectFeedbackAlignment(key=2), PredictiveCoding(steps=5)],
    ids=lambda r: r.name,
)
def test_every_rule_plugs_into_the_same_training_step_and_lowers_the_loss(rule):
    model, params, x, y = _net(sizes=(6, 16, 16, 4), activation="relu")
    trainer = make_rule_trainer(model, rule, optax.sgd(0.1))
    rule_state, opt_state = trainer.init(params)
    first = float(model.loss_fn(params, x, y))
    for _ in range(100):
        params, rule_state, opt_state, _ = trainer.step(params, rule_state, opt_state, x, y)
    assert float(model.loss_fn(params, x, y)) < 0.5 * first


def test_backprop_training_step_is_sgd_on_jax_grad(x64):
    model, params, x, y = _net()
    trainer = make_rule_trainer(model, BackProp(), optax.sgd(0.05))
    new, *_ = trainer.step(params, *trainer.init(params), x, y)
    expected = jax.tree.map(lambda p, g: p - 0.05 * g, params, jax.grad(model.loss_fn)(params, x, y))
    assert _max_diff(new, expected) < 1e-14


# ------------------------------------------------------------------------------------ bad input


def test_rules_refuse_a_network_that_is_not_an_mlp():
    model, params, _, _ = _net()
    for rule in (BackProp(), FeedbackAlignment(key=0), DirectFeedbackAlignment(key=0), PredictiveCoding()):
        with pytest.raises(TypeError, match="model: .* serves a feedforward .*MLP, got dict"):
            rule.init({"sizes": (6, 8, 4)}, params)


def test_feedback_rules_refuse_a_network_without_hidden_layers():
    model = MLP((6, 4))
    params = model.init(jax.random.key(0))
    for rule in (FeedbackAlignment(key=0), DirectFeedbackAlignment(key=0)):
        with pytest.raises(ValueError, match=r"sizes \(6, 4\) has none.*use BackProp\(\)"):
            rule.init(model, params)
    assert BackProp().init(model, params) == ()


def test_feedback_rules_need_a_key_or_matrices():
    model, params, _, _ = _net()
    with pytest.raises(ValueError, match=r"key: FeedbackAlignment .*FeedbackAlignment\(key=jax.random.key\(0\)\)"):
        FeedbackAlignment().init(model, params)


def test_feedback_matrix_of_the_wrong_shape_is_named():
    model, params, _, _ = _net(sizes=(6, 8, 7, 4))
    with pytest.raises(
        ValueError,
        match=r"feedback: FeedbackAlignment feedback matrix B3 expected "
        r"shape \(7, 4\) .* got \(4, 7\)",
    ):
        FeedbackAlignment(feedback=[params[1].W.T, params[2].W]).init(model, params)
    with pytest.raises(ValueError, match=r"expected 2 feedback matrices .* got 1"):
        FeedbackAlignment(feedback=[params[1].W.T]).init(model, params)


def test_feedback_state_from_another_network_is_refused_at_update():
    model, params, x, y = _net(sizes=(6, 8, 7, 4))
    other, other_params, _, _ = _net(sizes=(6, 9, 7, 4))
    dfa = DirectFeedbackAlignment(key=0)
    with pytest.raises(ValueError, match=r"state: DirectFeedbackAlignment feedback matrix D1 expected shape \(8, 4\)"):
        dfa.update(model, params, dfa.init(other, other_params), x, y)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="steps: expected a non-negative integer, got -1"):
        PredictiveCoding(steps=-1)
    with pytest.raises(ValueError, match="inference_rate: expected 0 < gamma < 1"):
        PredictiveCoding(inference_rate=1.5)
    with pytest.raises(ValueError, match="sizes: expected at least two positive integer"):
        MLP((784,))
    with pytest.raises(ValueError, match="loss: expected one of"):
        MLP((2, 3), loss="hinge")
    with pytest.raises(ValueError, match="output_precision: expected a positive number"):
        PredictiveCoding(output_precision=0.0)
    with pytest.raises(TypeError, match="rule: got an optax optimizer"):
        make_rule_trainer(MLP((2, 3)), optax.sgd(0.1), optax.sgd(0.1))
    with pytest.raises(TypeError, match="rule: expected a learning rule"):
        make_rule_trainer(MLP((2, 3)), "backprop", optax.sgd(0.1))
    model, params, _, _ = _net(sizes=(6, 8, 4))
    with pytest.raises(ValueError, match=r"params: layer 1 expected W \(8, 6\)"):
        BackProp().init(model, (Layer(params[0].W.T, params[0].b), params[1]))
