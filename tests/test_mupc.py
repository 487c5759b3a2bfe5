"""muPC: the residual PC MLP's width- and depth-dependent scalings, against their definition.

Oracles: the closed-form multipliers of Innocenti et al. 2025 (as JPC implements them), the
variance of the states at initialisation, and a hand-written energy of the residual network
differentiated by ``jax.grad``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from predcode.experiments.config import ConfigError, parse_toml
from predcode.experiments.config.network import build_network
from predcode.learning.trainer import weight_gradient
from predcode.models.network import Dense, NetworkError, Residual, mupc_scales, residual_mlp


def test_the_multipliers_and_the_initialisation_are_mupcs():
    assert mupc_scales(8, 128, 784) == (1 / 28, 1 / 32, 1 / 128)
    assert mupc_scales(8, 128, 784, residual=False)[1] == 1 / math.sqrt(128)
    net = residual_mlp(6, 50, in_dim=30, out_dim=4)
    first, hidden, last = net.node("h1").inputs["x"], net.node("h3").inputs["h2"], net.node("y").inputs["h5"]
    assert isinstance(first, Dense) and first.scale == 1 / math.sqrt(30) and first.input_activation == "identity"
    assert isinstance(hidden, Residual) and hidden.branch.scale == 1 / math.sqrt(50 * 6)
    assert hidden.branch.input_activation == "relu" and not hidden.branch.bias
    assert isinstance(last, Dense) and last.scale == 1 / 50 and last.input_activation == "relu"
    params = residual_mlp(6, 400, in_dim=300, out_dim=4).init(jax.random.key(0))
    w = np.asarray(params["edges"]["h3"]["h2"]["w"])
    assert abs(w.std() - 1.0) < 0.01 and abs(w.mean()) < 0.01  # N(0, 1), whatever the width
    std = residual_mlp(6, 400, in_dim=300, out_dim=4, param="standard")
    assert std.node("h3").inputs["h2"].branch.scale == 1.0
    w = np.asarray(std.init(jax.random.key(0))["edges"]["h3"]["h2"]["w"])
    assert abs(w.std() - 1 / math.sqrt(400)) < 0.01 / math.sqrt(400)  # the Dense default N(0, 1/fan_in)
    with pytest.raises(NetworkError, match="param: expected one of"):
        residual_mlp(4, 8, param="mup")
    with pytest.raises(NetworkError, match="depth: expected at least 2"):
        residual_mlp(1, 8)
    with pytest.raises(NetworkError, match="keeps the size"):
        Residual(Dense(3, 4))


def test_the_states_stay_order_one_with_depth_at_initialisation_and_explode_without_mupc():
    x = jax.random.normal(jax.random.key(1), (128, 100))
    ratios = {}
    for param in ("mupc", "standard"):
        for depth in (4, 16, 64):
            net = residual_mlp(depth, 64, in_dim=100, param=param)
            s = net.forward(net.init(jax.random.key(depth)), {"x": x})
            ratios[param, depth] = float(jnp.mean(s[f"h{depth - 1}"] ** 2) / jnp.mean(s["h1"] ** 2))
            if param == "mupc":
                assert 0.5 < float(jnp.mean(s["h1"] ** 2)) < 2  # unit-variance input: h1 is O(1)
                assert float(jnp.mean(s["y"] ** 2)) < 4 / 64  # the readout is O(1/width)
    for depth in (4, 16, 64):
        # each branch adds 1/(2 depth) of the variance: (1 + 1/(2L))^L <= e^(1/2), with width-64 noise
        assert 1.0 < ratios["mupc", depth] < 1.25 * math.exp(0.5), ratios
    assert ratios["standard", 16] > 100 and ratios["standard", 64] > 1e8, ratios


def _hand_energy(params, states, x, depth, width, in_dim):
    """1/2 sum_l |z_l - mu_l|^2 of muPC's residual network, written out (no predcode transforms)."""
    a1, al, aL = 1 / math.sqrt(in_dim), 1 / math.sqrt(width * depth), 1 / width
    w = lambda child, parent: params["edges"][child][parent]["w"]
    relu = lambda z: jnp.maximum(z, 0)
    e = 0.5 * jnp.sum((states["h1"] - a1 * x @ w("h1", "x")) ** 2)
    for l in range(2, depth):
        prev = states[f"h{l - 1}"]
        e += 0.5 * jnp.sum((states[f"h{l}"] - prev - al * relu(prev) @ w(f"h{l}", f"h{l - 1}")) ** 2)
    return e + 0.5 * jnp.sum((states["y"] - aL * relu(states[f"h{depth - 1}"]) @ w("y", f"h{depth - 1}")) ** 2)


def test_energy_drive_and_weight_gradient_match_jax_grad_of_the_written_out_energy(x64):
    depth, width, in_dim, batch = 5, 6, 7, 3
    net = residual_mlp(depth, width, in_dim=in_dim, out_dim=2)
    params = net.init(jax.random.key(0))
    keys = jax.random.split(jax.random.key(1), depth + 1)
    x, y = jax.random.normal(keys[0], (batch, in_dim)), jax.random.normal(keys[1], (batch, 2))
    free = {f"h{l}": jax.random.normal(keys[l + 1], (batch, width)) for l in range(1, depth)}
    states = {"x": x, **free, "y": y}
    const = batch * (width * (depth - 1) + 2) * 0.5 * math.log(2 * math.pi)  # the unit Gaussians' normaliser
    hand = _hand_energy(params, states, x, depth, width, in_dim)
    np.testing.assert_allclose(float(net.energy(params, states)), float(hand) + const, rtol=1e-12)
    drive = net.term(params, {"x": x, "y": y}).predict(free)[2]
    oracle = jax.grad(lambda f: _hand_energy(params, {"x": x, **f, "y": y}, x, depth, width, in_dim))(free)
    for name in free:
        np.testing.assert_allclose(np.asarray(drive[name]), -np.asarray(oracle[name]), rtol=1e-10, atol=1e-12)
    _, grads = weight_gradient(net, params, states)
    oracle = jax.grad(lambda p: _hand_energy(p, states, x, depth, width, in_dim) / batch)(params)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(oracle)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)


def test_the_network_config_builds_it_and_refuses_what_it_cannot_be():
    text = (
        '[network]\ndims = [784, 32, 32, 32, 10]\nresidual = true\nparam = "mupc"\nbias = false\n'
        "[inference]\nlearning_rate = 0.01\n"
    )
    net = build_network(parse_toml(text))
    assert net.names == ("x", "h1", "h2", "h3", "y") and isinstance(net.node("h2").inputs["h1"], Residual)
    assert net.node("h2").inputs["h1"].branch.scale == 1 / math.sqrt(32 * 4)
    with pytest.raises(ConfigError, match="network.dims: expected hidden sizes all equal"):
        parse_toml('[network]\ndims = [784, 32, 16, 10]\nparam = "mupc"\n')
    with pytest.raises(ConfigError, match='network.hidden: expected "nodes"'):
        parse_toml('[network]\ndims = [784, 32, 32, 10]\nresidual = true\nhidden = "transform"\n')
    with pytest.raises(ConfigError, match="output_activation = identity"):
        parse_toml('[network]\ndims = [784, 32, 32, 10]\nresidual = true\noutput_activation = "tanh"\n')
