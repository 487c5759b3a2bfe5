"""PCX's benchmark set-up: uniform ``+-1/sqrt(fan_in)`` initial weights and normalized input pixels."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from predcode.experiments.config import ConfigError, build_network, load_config, with_overrides
from predcode.experiments.pc_fit import input_scaling, load_pc_data
from predcode.models.conv import Conv2d, ConvTranspose2d
from predcode.models.network import Dense, NetworkError, PCNetwork

PCX_MNIST = "configs/pc/pcx_mlp_mnist_se.toml"


def _uniform_checks(w: np.ndarray, bound: float) -> None:
    w = np.asarray(w, np.float64).ravel()
    assert np.all(np.abs(w) <= bound)
    assert np.abs(w).max() > 0.95 * bound  # fills the interval, not a narrower one
    # U(-s, s) has mean 0 and variance s^2 / 3; standard errors from the sample size
    n = w.size
    assert abs(w.mean()) < 5 * bound / math.sqrt(3 * n)
    assert w.var() == pytest.approx(bound**2 / 3, rel=5 * math.sqrt(0.8 / n))


def test_dense_uniform_init_is_torch_linears_bound_for_weights_and_bias():
    layer = Dense(400, 300, "gelu", weight_init="uniform")
    params = layer.init(jax.random.PRNGKey(0))
    _uniform_checks(params["w"], 1 / math.sqrt(400))
    b = np.asarray(params["b"])
    assert np.all(np.abs(b) <= 1 / math.sqrt(400)) and np.count_nonzero(b) == b.size
    assert np.ptp(b) > 1 / math.sqrt(400)  # spread over the interval


def test_dense_normal_init_is_unchanged_by_the_option():
    key = jax.random.PRNGKey(3)
    old = Dense(500, 400, "relu").init(key)
    assert np.allclose(np.asarray(old["b"]), 0)
    w = np.asarray(old["w"], np.float64)
    assert w.std() == pytest.approx(math.sqrt(2 / 500), rel=0.02)
    assert np.array_equal(np.asarray(Dense(500, 400, "relu", weight_init="normal").init(key)["w"]), w)


def test_init_scale_sets_the_uniform_bound():
    params = Dense(200, 200, weight_init="uniform", init_scale=0.3).init(jax.random.PRNGKey(1))
    _uniform_checks(params["w"], 0.3)


def test_conv_uniform_init_uses_the_kernels_fan_in():
    conv = Conv2d((12, 12, 6), 16, 5, weight_init="uniform")
    params = conv.init(jax.random.PRNGKey(2))
    assert params["w"].shape == (5, 5, 6, 16)
    _uniform_checks(params["w"], 1 / math.sqrt(5 * 5 * 6))
    deconv = ConvTranspose2d((6, 6, 16), 8, 3, weight_init="uniform")
    w = np.asarray(deconv.init(jax.random.PRNGKey(4))["w"])
    assert np.all(np.abs(w) <= 1 / math.sqrt(3 * 3 * 16))


@pytest.mark.parametrize(
    "make", [lambda: Dense(3, 2, weight_init="xavier"), lambda: Conv2d((4, 4, 1), 2, weight_init="he")]
)
def test_an_unknown_weight_init_names_the_parameter(make):
    with pytest.raises(NetworkError, match=r"weight_init: expected one of 'normal', 'uniform', got '(xavier|he)'"):
        make()


def test_chain_gives_every_dense_the_init():
    net = PCNetwork.chain([5, 4, 3], weight_init="uniform")
    params = net.init(jax.random.PRNGKey(0))
    for node in net.nodes[1:]:
        for src, t in node.inputs.items():
            assert t.weight_init == "uniform"
            assert np.count_nonzero(np.asarray(params["edges"][node.name][src]["b"])) > 0


def test_config_builds_uniform_init_and_refuses_it_for_mupc():
    cfg = with_overrides(load_config(PCX_MNIST), **{"network.weight_init": "uniform"})
    net = build_network(cfg)
    assert all(t.weight_init == "uniform" for n in net.nodes[1:] for t in n.inputs.values())
    mupc = load_config("configs/pc/mnist_mupc.toml")
    with pytest.raises(ConfigError, match="network.weight_init"):
        with_overrides(mupc, **{"network.weight_init": "uniform"})
    with pytest.raises(ConfigError, match=r"network.weight_init: expected one of"):
        with_overrides(load_config(PCX_MNIST), **{"network.weight_init": "orthogonal"})


def test_input_scaling_symmetric_and_standardize():
    x = np.random.default_rng(0).uniform(0, 1, (200, 30)).astype(np.float32)
    shift, scale = input_scaling("symmetric", x)
    assert ((0 - shift) / scale, (1 - shift) / scale) == (-1.0, 1.0)
    shift, scale = input_scaling("standardize", x)
    z = (x.astype(np.float64) - shift) / scale
    assert abs(z.mean()) < 1e-9 and z.std() == pytest.approx(1.0, abs=1e-9)
    assert input_scaling("none", x) == (0.0, 1.0)
    with pytest.raises(ConfigError, match="data.normalize: expected training pixels that are not all equal"):
        input_scaling("standardize", np.full((4, 3), 0.2, np.float32))


def test_load_pc_data_scales_every_split_with_the_training_numbers():
    base = with_overrides(load_config(PCX_MNIST), **{"data.n_train": 500, "data.n_val": 100})
    raw = load_pc_data(base)
    std = load_pc_data(with_overrides(base, **{"data.normalize": "standardize"}))
    mean, sd = float(np.mean(raw.x_train, dtype=np.float64)), float(np.std(raw.x_train, dtype=np.float64))
    assert (std.shift, std.scale) == pytest.approx((mean, sd))
    for a, b in ((raw.x_train, std.x_train), (raw.x_val, std.x_val), (raw.x_test, std.x_test)):
        assert np.allclose((a - mean) / sd, b, atol=1e-5)
    assert np.array_equal(raw.y_test, std.y_test)
    sym = load_pc_data(with_overrides(base, **{"data.normalize": "symmetric"}))
    assert sym.x_test.min() == -1.0 and sym.x_test.max() == 1.0
    with pytest.raises(ConfigError, match="data.normalize: expected one of"):
        with_overrides(base, **{"data.normalize": "minmax"})


def test_the_museum_does_not_take_data_normalize():
    museum = load_config("configs/mnist/gncn_pdh.toml")
    with pytest.raises(ConfigError, match="data.normalize"):
        with_overrides(museum, **{"data.normalize": "symmetric"})
