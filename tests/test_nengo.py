"""predcode.nengo: backprop and feedback alignment as nengo learning rules.

Oracles: ``jax.grad`` (float64) of the squared output error of the same rate model built from the
ensemble's own gain, bias and encoders; predcode.learning.rules' BackProp / FeedbackAlignment on the
matching MLP; central differences of nengo's own rate functions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import nengo
import numpy as np
import pytest
from nengo.exceptions import BuildError, ValidationError

from predcode.learning.rules import BackProp as MLPBackProp
from predcode.learning.rules import FeedbackAlignment as MLPFeedbackAlignment
from predcode.models.mlp import MLP, Layer
from predcode.nengo import BackProp, DirectFeedbackAlignment, FeedbackAlignment, rate_derivative

X = np.array([0.4, -0.3])  # the constant input, (d,)
ERR = np.array([0.7, -0.2])  # the constant error output - target, (n_out,)
KAPPA = 3.0


def _net(neuron_type, make_rule, *, n=24, n_out=2, seed=3, gain_bias=None, x=None, err=None):
    """inp -> hidden (rule) ; hidden -> out (fixed decoders of a nonlinear function); error -> rule.

    ``x`` / ``err``: constants or functions of t. Returns the network and its parts.
    """
    x = X if x is None else x
    err = ERR[:n_out] if err is None else err
    kw = {} if gain_bias is None else {"gain": gain_bias[0], "bias": gain_bias[1]}
    with nengo.Network(seed=seed) as net:
        inp = nengo.Node(x)
        hidden = nengo.Ensemble(n, 2, neuron_type=neuron_type, seed=seed, **kw)  # seeds fixed: rules add connections
        out = nengo.Node(size_in=n_out)
        error = nengo.Node(err)
        func = lambda v: [v[0] * v[1], v[0] ** 2][:n_out]

        l2 = nengo.Connection(hidden, out, function=func, synapse=None, seed=seed)
        l1 = nengo.Connection(inp, hidden, synapse=None, learning_rule_type=make_rule(l2))
        if l1.learning_rule is not None:
            nengo.Connection(error, l1.learning_rule, synapse=None)
    return net, hidden, l1, l2


def _state(sim, hidden, l2):
    sig = sim.model.sig
    return (
        np.array(sim.signals[sig[hidden]["encoders"]]),
        np.array(sim.signals[sig[hidden.neurons]["bias"]]),
        np.array(sim.signals[sig[l2]["weights"]]),
    )


def _rate_jnp(neuron_type, J):
    """The rate function of ``neuron_type`` (gain 1, bias 0) in jnp, written from its definition."""
    if isinstance(neuron_type, nengo.LIFRate):
        j = J - 1.0
        safe = jnp.where(j > 0, j, 1.0)
        r = neuron_type.amplitude / (neuron_type.tau_ref + neuron_type.tau_rc * jnp.log1p(1.0 / safe))
        return jnp.where(j > 0, r, 0.0)
    if isinstance(neuron_type, nengo.RectifiedLinear):
        return neuron_type.amplitude * jnp.maximum(J, 0.0)
    raise AssertionError(neuron_type)


@pytest.mark.parametrize(
    "neuron_type",
    [nengo.LIFRate(), nengo.RectifiedLinear(), nengo.LIF(), nengo.SpikingRectifiedLinear()],
    ids=lambda t: type(t).__name__,
)
def test_backprop_step_equals_jax_grad_of_the_rate_model(neuron_type, x64):
    net, hidden, l1, l2 = _net(neuron_type, lambda l2: BackProp(l2, learning_rate=KAPPA))
    with nengo.Simulator(net, progress_bar=False) as sim:
        E0, b0, W = _state(sim, hidden, l2)
        sim.step()  # computes the deltas from this step's x, J and e
        E1, b1, _ = _state(sim, hidden, l2)
        rule_sig = sim.model.sig[l1.learning_rule]
        dE, db = np.array(sim.signals[rule_sig["delta"]]), np.array(sim.signals[rule_sig["bias_delta"]])
        sim.step()  # applies them
        E2, b2, _ = _state(sim, hidden, l2)
    np.testing.assert_array_equal(E1, E0)  # nengo applies a delta at the start of the next step
    rate_type = nengo.LIFRate() if isinstance(neuron_type, nengo.LIFRate) else nengo.RectifiedLinear()
    x, e = jnp.asarray(X), jnp.asarray(ERR)
    y = W @ np.asarray(_rate_jnp(rate_type, E0 @ X + b0)) - ERR  # the target for which out - y = e

    def loss(E, b):
        out = jnp.asarray(W) @ _rate_jnp(rate_type, E @ x + b)
        return 0.5 * jnp.sum((out - y) ** 2)

    gE, gb = jax.grad(loss, argnums=(0, 1))(jnp.asarray(E0), jnp.asarray(b0))
    assert gE.dtype == jnp.float64 and float(jnp.max(jnp.abs(gE))) > 0 and e.shape == (2,)
    alpha = -KAPPA * sim.dt
    np.testing.assert_allclose(dE, alpha * np.asarray(gE), rtol=1e-6, atol=1e-12 * abs(alpha) * np.abs(gE).max())
    np.testing.assert_allclose(db, alpha * np.asarray(gb), rtol=1e-6, atol=1e-12 * abs(alpha) * np.abs(gb).max())
    # the applied change, up to float64 rounding of E and b themselves
    np.testing.assert_allclose(E2 - E0, dE, rtol=0, atol=4e-16 * np.abs(E0).max())
    np.testing.assert_allclose(b2 - b0, db, rtol=0, atol=4e-16 * np.abs(b0).max())
    assert np.abs(dE).max() > 1e3 * 4e-16 * np.abs(E0).max()
    assert np.count_nonzero(gb) > 5  # enough neurons are active for the check to mean something


def test_feedback_alignment_with_the_decoders_transposed_is_backprop():
    x = lambda t: [np.sin(7 * t), np.cos(5 * t)]
    err = lambda t: [np.sin(11 * t), 0.5 * np.cos(3 * t)]
    kw = {"x": x, "err": err, "seed": 5}
    net, hidden, _, l2 = _net(nengo.LIF(), lambda l2: None, **kw)
    with nengo.Simulator(net, progress_bar=False) as sim:
        W = _state(sim, hidden, l2)[2]
    results = {}
    for name, make in [
        ("bp", lambda l2: BackProp(l2, learning_rate=KAPPA)),
        ("fa", lambda l2: FeedbackAlignment(error_size=2, learning_rate=KAPPA, feedback=W.T)),
        ("dfa", lambda l2: DirectFeedbackAlignment(error_size=2, learning_rate=KAPPA, feedback=W.T)),
    ]:
        net, hidden, l1, l2 = _net(nengo.LIF(), make, **kw)
        with nengo.Simulator(net, progress_bar=False) as sim:
            E0, b0, _ = _state(sim, hidden, l2)
            sim.run_steps(50)
            results[name] = _state(sim, hidden, l2)
            if name != "bp":
                np.testing.assert_array_equal(sim.data[l1.learning_rule].feedback, W.T)
    assert np.abs(results["bp"][0] - E0).max() > 1e-6 and np.abs(results["bp"][1] - b0).max() > 1e-6
    for name in ("fa", "dfa"):
        np.testing.assert_allclose(results[name][0], results["bp"][0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(results[name][1], results["bp"][1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "neuron_type, activation",
    [(nengo.RectifiedLinear(), "relu"), (nengo.Tanh(tau_ref=1.0), "tanh"), (nengo.Sigmoid(tau_ref=1.0), "sigmoid")],
    ids=["relu", "tanh", "sigmoid"],
)
def test_updates_equal_predcode_rules_on_the_matching_mlp(neuron_type, activation, x64):
    n = 16
    rng = np.random.default_rng(0)
    gain_bias = (rng.uniform(0.5, 2.0, n), rng.uniform(-1.0, 1.0, n))
    B = rng.normal(size=(n, 2)) * 0.1
    out = {}
    for name, make in [
        ("bp", lambda l2: BackProp(l2, learning_rate=KAPPA)),
        ("fa", lambda l2: FeedbackAlignment(error_size=2, learning_rate=KAPPA, feedback=B)),
    ]:
        net, hidden, _, l2 = _net(neuron_type, make, n=n, gain_bias=gain_bias)
        with nengo.Simulator(net, progress_bar=False) as sim:
            E0, b0, W = _state(sim, hidden, l2)
            sim.run_steps(2)
            E2, b2, _ = _state(sim, hidden, l2)
        out[name] = (E2 - E0, b2 - b0)
    np.testing.assert_allclose(E0, gain_bias[0][:, None] * sim.data[hidden].encoders)  # the real gain
    mlp = MLP((2, n, 2), activation=activation, loss="squared_error")
    params = (Layer(jnp.asarray(E0), jnp.asarray(b0)), Layer(jnp.asarray(W), jnp.zeros(2)))
    x = jnp.asarray(X)[None]
    y = mlp.apply(params, x) - jnp.asarray(ERR)[None]
    alpha = -KAPPA * sim.dt
    (g1, _), _ = MLPBackProp().update(mlp, params, (), x, y)
    np.testing.assert_allclose(out["bp"][0], alpha * np.asarray(g1.W), rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(out["bp"][1], alpha * np.asarray(g1.b), rtol=1e-6, atol=1e-14)
    fa = MLPFeedbackAlignment(feedback=[B])  # predcode keeps its feedback in float32
    (f1, _), _ = fa.update(mlp, params, fa.init(mlp, params), x, y)
    scale = np.abs(f1.W).max()
    np.testing.assert_allclose(out["fa"][0], alpha * np.asarray(f1.W), rtol=1e-5, atol=1e-6 * abs(alpha) * scale)
    np.testing.assert_allclose(out["fa"][1], alpha * np.asarray(f1.b), rtol=1e-5, atol=1e-6 * abs(alpha) * scale)
    assert np.abs(out["bp"][0] - out["fa"][0]).max() > 1e-3 * np.abs(out["bp"][0]).max()  # B is not W^T


def test_the_output_connection_may_be_built_after_the_learned_one():
    # nengo builds a sub-network's connections before its parent's: l1 (in `sub`) is built before
    # l2, so BackProp looks up l2's weights only once the whole model is built.
    results = []
    for l1_in_sub in (False, True):
        with nengo.Network(seed=3) as net:
            inp = nengo.Node(X)
            hidden = nengo.Ensemble(24, 2, seed=3)  # fixed: the sub-network changes the seeding
            out = nengo.Node(size_in=1)
            l2 = nengo.Connection(hidden, out, function=lambda v: v[0] * v[1], synapse=None, seed=3)
            sub = nengo.Network() if l1_in_sub else net
            with sub:
                rule = BackProp(l2, learning_rate=KAPPA)
                l1 = nengo.Connection(inp, hidden, synapse=None, learning_rule_type=rule)
            nengo.Connection(nengo.Node(ERR[:1]), l1.learning_rule, synapse=None)
        with nengo.Simulator(net, progress_bar=False) as sim:
            E0 = np.array(sim.signals[sim.model.sig[hidden]["encoders"]])
            sim.run_steps(3)
            results.append(np.array(sim.signals[sim.model.sig[hidden]["encoders"]]) - E0)
            if l1_in_sub:
                order = list(sim.model.params)
                assert order.index(l1) < order.index(l2)
    assert np.abs(results[0]).max() > 0
    np.testing.assert_allclose(results[1], results[0], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "neuron_type",
    [
        nengo.LIFRate(tau_rc=0.03, amplitude=0.5),
        nengo.LIF(),
        nengo.RectifiedLinear(amplitude=2.0),
        nengo.SpikingRectifiedLinear(),
        nengo.Sigmoid(tau_ref=0.01),
        nengo.Tanh(tau_ref=0.02),
        nengo.RegularSpiking(nengo.LIFRate()),
        nengo.PoissonSpiking(nengo.Tanh()),
    ],
    ids=lambda t: repr(t),
)
def test_rate_derivative_matches_central_differences_of_nengos_rates(neuron_type):
    J = np.linspace(-3, 6, 301)
    J = J[(np.abs(J) > 1e-3) & (np.abs(J - 1) > 2e-2)]  # away from the kinks at 0 and 1
    h = 1e-6
    rate = lambda j: neuron_type.rates(j[:, None], gain=np.ones(1), bias=np.zeros(1))[:, 0]
    numeric = (rate(J + h) - rate(J - h)) / (2 * h)
    np.testing.assert_allclose(rate_derivative(neuron_type, J), numeric, rtol=1e-5, atol=1e-6 * np.abs(numeric).max())


@pytest.mark.parametrize("neuron_type", [nengo.AdaptiveLIF(), nengo.Izhikevich(), nengo.AdaptiveLIFRate()])
def test_a_neuron_type_without_a_derivative_is_refused_at_build_time(neuron_type):
    net, *_ = _net(neuron_type, lambda l2: BackProp(l2, learning_rate=KAPPA))
    with pytest.raises(BuildError, match=f"neuron_type.*got {type(neuron_type).__name__}"):
        nengo.Simulator(net, progress_bar=False)
    with pytest.raises(BuildError, match="expected one of LIF"):
        rate_derivative(neuron_type, [0.0])


@pytest.mark.parametrize("lr", [0, -1.0, float("nan"), float("inf"), "fast", True])
def test_a_non_positive_learning_rate_is_refused(lr):
    with nengo.Network():
        a = nengo.Ensemble(5, 1)
        conn = nengo.Connection(a, nengo.Node(size_in=1))
    with pytest.raises(ValidationError, match=r"learning_rate: BackProp expected a positive finite number, got"):
        BackProp(conn, learning_rate=lr)
    with pytest.raises(ValidationError, match=r"learning_rate: FeedbackAlignment expected a positive"):
        FeedbackAlignment(error_size=1, learning_rate=lr)


def test_bad_arguments_are_refused_with_their_names():
    with (
        nengo.Network(),
        pytest.raises(ValidationError, match="conn: BackProp expected the nengo.Connection.*Ensemble"),
    ):
        BackProp(nengo.Ensemble(5, 1))
    for size in (0, 1.5, None):
        with pytest.raises(
            ValidationError, match=f"error_size: FeedbackAlignment expected a positive integer.*got {size}"
        ):
            FeedbackAlignment(error_size=size)
    with pytest.raises(ValidationError, match=r"feedback: .*shape \(n_neurons, error_size=2\), got shape \(4, 3\)"):
        FeedbackAlignment(error_size=2, feedback=np.zeros((4, 3)))


def test_bad_networks_are_refused_when_built():
    # post is a Node, not an Ensemble: nengo itself refuses an encoder rule there
    with nengo.Network() as net:
        a = nengo.Ensemble(10, 1)
        node = nengo.Node(size_in=1)
        l2 = nengo.Connection(a, node)
        with pytest.raises(
            ValidationError, match="'post' must be of type 'Ensemble' .got 'Node'. for learning rule 'BackProp"
        ):
            nengo.Connection(nengo.Node([0.0]), node, learning_rule_type=BackProp(l2))
    # post is the ensemble's neurons
    with nengo.Network() as net:
        a = nengo.Ensemble(10, 1)
        with pytest.raises(
            ValidationError, match="'post' must be of type 'Ensemble' .got 'Neurons'. for learning rule 'Feed"
        ):
            nengo.Connection(nengo.Node(np.zeros(10)), a.neurons, learning_rule_type=FeedbackAlignment(1))
    # BackProp given a connection that leaves another ensemble
    with nengo.Network() as net:
        a, other = nengo.Ensemble(10, 1), nengo.Ensemble(10, 1)
        l2 = nengo.Connection(other, nengo.Node(size_in=1))
        nengo.Connection(nengo.Node([0.0]), a, learning_rule_type=BackProp(l2))
    with pytest.raises(BuildError, match="conn: BackProp .* connection out of the post ensemble.*leaves"):
        nengo.Simulator(net, progress_bar=False)
    # a feedback matrix for another ensemble size
    with nengo.Network() as net:
        a = nengo.Ensemble(10, 1)
        nengo.Connection(nengo.Node([0.0]), a, learning_rule_type=FeedbackAlignment(1, feedback=np.ones((7, 1))))
    with pytest.raises(BuildError, match=r"feedback: .*expected shape \(n_neurons=10, error_size=1\), got \(7, 1\)"):
        nengo.Simulator(net, progress_bar=False)


def test_a_wrong_error_size_is_refused():
    with nengo.Network():
        a = nengo.Ensemble(10, 1)
        l2 = nengo.Connection(a, nengo.Node(size_in=1))
        l1 = nengo.Connection(nengo.Node([0.0]), a, learning_rule_type=BackProp(l2))
        with pytest.raises(ValidationError, match="[Ss]hape mismatch|size"):
            nengo.Connection(nengo.Node([0.0, 0.0]), l1.learning_rule)
        l3 = nengo.Connection(nengo.Node([0.0]), a, learning_rule_type=FeedbackAlignment(3))
        with pytest.raises(ValidationError, match="[Ss]hape mismatch|size"):
            nengo.Connection(nengo.Node([0.0]), l3.learning_rule)


def test_default_feedback_is_drawn_once_from_the_encoder_distribution_and_kept():
    make = lambda l2: FeedbackAlignment(error_size=1, learning_rate=KAPPA, seed=10)
    feedbacks = []
    for _ in range(2):
        net, hidden, l1, _ = _net(nengo.LIF(), make, n_out=1)
        with nengo.Simulator(net, progress_bar=False) as sim:
            B = sim.data[l1.learning_rule].feedback
            sim.run_steps(5)
            np.testing.assert_array_equal(sim.signals[sim.model.sig[l1.learning_rule]["feedback"]], B)
            max_rates = sim.data[hidden].max_rates
        feedbacks.append(B)
    np.testing.assert_array_equal(feedbacks[0], feedbacks[1])  # the seed fixes it
    assert feedbacks[0].shape == (24, 1)
    # unit vectors in one dimension are +-1, scaled by 1 / (n mean max_rate)
    np.testing.assert_allclose(np.abs(feedbacks[0]), 1.0 / (24 * np.mean(max_rates)))
    assert 0 < np.mean(feedbacks[0] > 0) < 1


def test_the_rule_signals_can_be_probed():
    net, hidden, l1, l2 = _net(nengo.LIFRate(), lambda l2: BackProp(l2, learning_rate=KAPPA))
    with net:
        probes = {k: nengo.Probe(l1.learning_rule, k) for k in ("error", "delta", "bias_delta", "local_error")}
    with nengo.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(3)
    np.testing.assert_allclose(sim.data[probes["error"]][-1], ERR)
    local = sim.data[probes["local_error"]][-1]
    np.testing.assert_allclose(sim.data[probes["bias_delta"]][-1], -KAPPA * sim.dt * local)
    np.testing.assert_allclose(sim.data[probes["delta"]][-1], -KAPPA * sim.dt * np.outer(local, X))
    assert np.count_nonzero(local) > 5
