"""Convolutional transforms (predcode.models.conv) and image-shaped node states, against oracles:
explicit NumPy loops for convolution, transposed convolution and pooling, jax.grad of an energy
written out by hand for inference and learning, and the network's paths (clamps, trainer, trials,
checkpoint, config) on tiny shapes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from predcode.cells import GaussianErrorCell
from predcode.experiments.checkpoint import load_tree, save_checkpoint
from predcode.experiments.config import ConfigError, PCFitConfig, build_network
from predcode.experiments.config.network import NetworkSection
from predcode.learning.pc import PCTrainer
from predcode.learning.trainer import weight_gradient
from predcode.models.conv import AvgPool2d, Conv2d, ConvTranspose2d, Flatten, MaxPool2d, Reshape
from predcode.models.network import Dense, NetworkError, Node, PCNetwork, Sequential

TOL = dict(rtol=1e-9, atol=1e-9)


def _conv_loop(x, w, b, stride, pads):
    """Cross-correlation by explicit loops: out[n, i, j, o] = sum_{a,b,c} xp[n, i*s + a, j*s + b, c] w[a, b, c, o]."""
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    kh, kw, _, co = w.shape
    sh, sw = stride
    oh, ow = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    out = np.zeros((x.shape[0], oh, ow, co))
    for n in range(x.shape[0]):
        for i in range(oh):
            for j in range(ow):
                for o in range(co):
                    out[n, i, j, o] = np.sum(xp[n, i * sh : i * sh + kh, j * sw : j * sw + kw, :] * w[..., o])
    return out + (0 if b is None else b)


def _scatter_loop(x, w, b, stride):
    """Transposed convolution by explicit scatter: x[n, i, j] @ w[a, b] added at (i*s + a, j*s + b)."""
    kh, kw, _, co = w.shape
    sh, sw = stride
    n_, h, wd, _ = x.shape
    out = np.zeros((n_, (h - 1) * sh + kh, (wd - 1) * sw + kw, co))
    for i in range(h):
        for j in range(wd):
            for a in range(kh):
                for c in range(kw):
                    out[:, i * sh + a, j * sw + c, :] += x[:, i, j, :] @ w[a, c]
    return out + (0 if b is None else b)


@pytest.mark.parametrize(
    ("stride", "padding", "pads"),
    [
        ((1, 1), "SAME", ((1, 1), (1, 1))),
        ((2, 1), "VALID", ((0, 0), (0, 0))),
        ((2, 2), ((1, 0), (2, 1)), ((1, 0), (2, 1))),
    ],
)
def test_conv2d_equals_explicit_loop(x64, stride, padding, pads):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, 2))
    conv = Conv2d((5, 6, 2), 3, 3, stride, padding, activation="tanh")
    params = conv.init(jax.random.key(1))
    params["b"] = jnp.asarray(rng.normal(size=3))
    want = np.tanh(_conv_loop(x, np.asarray(params["w"]), np.asarray(params["b"]), stride, pads))
    got = np.asarray(conv(params, jnp.asarray(x)))
    assert conv.out_dim == want.shape[1:]
    np.testing.assert_allclose(got, want, **TOL)
    nobias = Conv2d((5, 6, 2), 3, 3, stride, padding, bias=False)
    assert set(nobias.init(jax.random.key(1))) == {"w"}
    np.testing.assert_allclose(
        np.asarray(nobias({"w": params["w"]}, jnp.asarray(x))),
        _conv_loop(x, np.asarray(params["w"]), None, stride, pads),
        **TOL,
    )


def test_conv2d_single_channel_equals_scipy_correlate(x64):
    x = np.random.default_rng(1).normal(size=(1, 7, 7, 1))
    conv = Conv2d((7, 7, 1), 1, 3, padding="VALID", bias=False)
    params = conv.init(jax.random.key(0))
    want = jax.scipy.signal.correlate2d(jnp.asarray(x[0, :, :, 0]), params["w"][:, :, 0, 0], mode="valid")
    np.testing.assert_allclose(np.asarray(conv(params, jnp.asarray(x)))[0, :, :, 0], np.asarray(want), **TOL)


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (2, 3)])
def test_conv_transpose_equals_explicit_scatter(x64, stride):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 4, 2))
    tconv = ConvTranspose2d((3, 4, 2), 3, (3, 2), stride, "VALID")
    params = tconv.init(jax.random.key(3))
    params["b"] = jnp.asarray(rng.normal(size=3))
    want = _scatter_loop(x, np.asarray(params["w"]), np.asarray(params["b"]), stride)
    assert tconv.out_dim == want.shape[1:]
    np.testing.assert_allclose(np.asarray(tconv(params, jnp.asarray(x))), want, **TOL)
    same = ConvTranspose2d((3, 4, 2), 3, 4, stride, "SAME")
    assert same.out_dim == (3 * stride[0], 4 * stride[1], 3)
    assert same(same.init(jax.random.key(0)), jnp.asarray(x)).shape == (2, *same.out_dim)


def test_pooling_equals_numpy(x64):
    x = np.random.default_rng(3).normal(size=(2, 4, 6, 3))
    blocks = x.reshape(2, 2, 2, 3, 2, 3)  # (n, i, a, j, b, c)
    mp, ap = MaxPool2d((4, 6, 3)), AvgPool2d((4, 6, 3))
    assert mp.out_dim == ap.out_dim == (2, 3, 3) and mp.init(jax.random.key(0)) == {}
    np.testing.assert_allclose(np.asarray(mp({}, jnp.asarray(x))), blocks.max(axis=(2, 4)), **TOL)
    np.testing.assert_allclose(np.asarray(ap({}, jnp.asarray(x))), blocks.mean(axis=(2, 4)), **TOL)
    # 3x3 windows, stride 1, "SAME": the mean over the window's pixels inside the image.
    same = AvgPool2d((4, 6, 3), 3, 1, "SAME")
    want = np.zeros_like(x)
    for i in range(4):
        for j in range(6):
            want[:, i, j] = x[:, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2].mean(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(same({}, jnp.asarray(x))), want, **TOL)
    mx = MaxPool2d((4, 6, 3), 3, 1, "SAME")
    want = np.zeros_like(x)
    for i in range(4):
        for j in range(6):
            want[:, i, j] = x[:, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2].max(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(mx({}, jnp.asarray(x))), want, **TOL)


def test_flatten_and_reshape():
    x = jnp.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    f = Flatten((3, 4, 5))
    assert f.out_dim == 60
    np.testing.assert_array_equal(np.asarray(f({}, x)), np.asarray(x).reshape(2, -1))
    r = Reshape(60, (4, 15, 1))
    np.testing.assert_array_equal(np.asarray(r({}, f({}, x))), np.asarray(x).reshape(2, 4, 15, 1))
    with pytest.raises(NetworkError, match=r"Reshape: in_dim \(60,\) has 60 units but out_dim \(7, 7\) has 49"):
        Reshape(60, (7, 7))


def test_bad_transform_arguments_are_named():
    with pytest.raises(NetworkError, match=r"Conv2d.in_dim: expected an image shape \(H, W, C\), got 784"):
        Conv2d(784, 8)
    with pytest.raises(NetworkError, match="Conv2d.padding: expected"):
        Conv2d((8, 8, 1), 4, padding="full")
    with pytest.raises(NetworkError, match="Conv2d.kernel_size: expected an integer >= 1 or a pair"):
        Conv2d((8, 8, 1), 4, kernel_size=0)
    with pytest.raises(NetworkError, match="Conv2d: the input of shape .* is too small"):
        Conv2d((2, 2, 1), 4, kernel_size=3, padding="VALID")
    with pytest.raises(ValueError, match="Conv2d.activation: expected one of"):
        Conv2d((8, 8, 1), 4, activation="swish")
    with pytest.raises(NetworkError, match=r"ConvTranspose2d.padding: expected \"SAME\" or \"VALID\""):
        ConvTranspose2d((4, 4, 2), 1, padding=1)


def test_shape_mismatch_names_both_nodes_and_shapes():
    with pytest.raises(
        NetworkError, match=r"node 'h': the transform from 'x' takes 64 units but node 'x' has shape \(8, 8, 1\)"
    ):
        PCNetwork([Node("x", (8, 8, 1)), Node("h", 10, {"x": Dense(64, 10)})])
    with pytest.raises(
        NetworkError,
        match=r"node 'h': the transform from 'x' gives shape \(8, 8, 4\) but node 'h' has shape \(4, 4, 4\)",
    ):
        PCNetwork([Node("x", (8, 8, 1)), Node("h", (4, 4, 4), {"x": Conv2d((8, 8, 1), 4)})])
    with pytest.raises(
        NetworkError, match=r"Sequential.layers\[1\]: takes shape \(8, 8, 4\) but layers\[0\] gives shape"
    ):
        Sequential((Conv2d((8, 8, 1), 2), MaxPool2d((8, 8, 4))))
    net = PCNetwork([Node("x", (8, 8, 1)), Node("h", (8, 8, 2), {"x": Conv2d((8, 8, 1), 2)})])
    with pytest.raises(NetworkError, match=r"clamp on node 'x': expected shape \(batch, 8, 8, 1\), got \(3, 64\)"):
        net.check_clamps({"x": jnp.zeros((3, 64))})


def _tiny_net(cell=None):
    """x (6x6x1) -> c (3x3x2: conv 3x3 same, relu, max pool 2) -> h (4: flatten, dense tanh) -> y (2)."""
    conv = Conv2d((6, 6, 1), 2, 3, activation="relu")
    return PCNetwork(
        [
            Node("x", (6, 6, 1)),
            Node("c", (3, 3, 2), {"x": Sequential((conv, MaxPool2d(conv.out_dim)))}, cell=cell),
            Node("h", 4, {"c": Sequential((Flatten((3, 3, 2)), Dense(18, 4, "tanh")))}),
            Node("y", 2, {"h": Dense(4, 2)}),
        ]
    )


def _hand_energy(params, x, c, h, y):
    """The tiny net's energy written out: unit Gaussians, 0.5 |state - mu|^2 + 0.5 log(2 pi) per unit."""
    e = params["edges"]
    z = jax.lax.conv_general_dilated(
        x, e["c"]["x"]["0"]["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    z = jax.nn.relu(z + e["c"]["x"]["0"]["b"])
    mu_c = z.reshape(z.shape[0], 3, 2, 3, 2, 2).max(axis=(2, 4))
    mu_h = jnp.tanh(c.reshape(c.shape[0], -1) @ e["h"]["c"]["1"]["w"] + e["h"]["c"]["1"]["b"])
    mu_y = h @ e["y"]["h"]["w"] + e["y"]["h"]["b"]
    sq = jnp.sum((c - mu_c) ** 2) + jnp.sum((h - mu_h) ** 2) + jnp.sum((y - mu_y) ** 2)
    return 0.5 * sq + 0.5 * math.log(2 * math.pi) * x.shape[0] * (18 + 4 + 2)


def test_energy_and_its_gradients_equal_jax_grad_of_the_energy_written_out(x64):
    net = _tiny_net()
    params = net.init(jax.random.key(0))
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(3, 6, 6, 1)))
    y = jnp.asarray(rng.normal(size=(3, 2)))
    states = {
        "x": x,
        "c": jnp.asarray(rng.normal(size=(3, 3, 3, 2))),
        "h": jnp.asarray(rng.normal(size=(3, 4))),
        "y": y,
    }
    np.testing.assert_allclose(float(net.energy(params, states)), float(_hand_energy(params, **states)), **TOL)
    # the drive -dE/dx of the free states
    term = net.term(params, {"x": x, "y": y})
    free = {"c": states["c"], "h": states["h"]}
    _, _, signals = term.predict(free)
    want = jax.grad(lambda f: _hand_energy(params, x, f["c"], f["h"], y))(free)
    for k in free:
        np.testing.assert_allclose(np.asarray(signals[k]), -np.asarray(want[k]), **TOL)
    # the weight gradient (batch mean) at fixed states
    _, grads = weight_gradient(net, params, states)
    want_p = jax.grad(lambda p: _hand_energy(p, **states) / 3)(params)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(want_p), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL)


def test_learnable_covariance_and_mask_on_an_image_node(x64):
    net = _tiny_net(cell=GaussianErrorCell("diagonal"))
    params = net.init(jax.random.key(0))
    assert params["cells"]["c"]["log_var"].shape == (18,)
    states = net.forward(params, {"x": jnp.ones((2, 6, 6, 1))})
    states["c"] = states["c"] + 1.0
    mask = jnp.zeros((2, 3, 3, 2)).at[:, 0].set(1.0)
    flat = GaussianErrorCell("diagonal")(
        states["c"].reshape(2, -1),
        net.prediction(params, states, "c").reshape(2, -1),
        sigma=jnp.ones(18),
        mask=mask.reshape(2, -1),
    )
    got = net.energies(params, states, {"c": mask})["c"]
    np.testing.assert_allclose(np.asarray(got), np.asarray(flat.energy), **TOL)
    assert net.covariance(params, "c").shape == (18, 18)


def test_tiny_conv_net_trains_trials_and_checkpoints(tmp_path):
    net = _tiny_net()
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, size=32)
    x = rng.normal(size=(32, 6, 6, 1)).astype(np.float32) * 0.3
    x[labels == 1, :3] += 1.0  # class 1 is bright in the top half
    clamps = {"x": jnp.asarray(x), "y": jax.nn.one_hot(labels, 2)}
    trainer = PCTrainer(net, optimizer_x=optax.sgd(0.1), optimizer_p=optax.adam(1e-2), T=5)
    params = net.init(jax.random.key(0))
    opt = trainer.init(params)
    const = 0.5 * math.log(2 * math.pi) * (18 + 4 + 2)  # the unit Gaussians' normalizer per sample
    first = None
    for _ in range(25):
        params, opt, m = trainer.step(params, opt, clamps)
        first = float(m.energy) - const if first is None else first
    assert float(m.energy) - const < 0.25 * first, (first, float(m.energy) - const)
    assert float(trainer.evaluate_energy(params, clamps)) - const < 0.25 * first
    out = net.forward(params, {"x": clamps["x"]})["y"]
    assert float(jnp.mean(jnp.argmax(out, 1) == labels)) == 1.0
    # two vmapped trials give each trial's own step
    stack = lambda *t: jax.tree.map(lambda *a: jnp.stack(a), *t)
    p0, p1 = net.init(jax.random.key(1)), net.init(jax.random.key(2))
    tp, _, _ = trainer.trials_step(stack(p0, p1), stack(trainer.init(p0), trainer.init(p1)), stack(clamps, clamps))
    one, _, _ = trainer.step(p1, trainer.init(p1), clamps)
    for a, b in zip(jax.tree.leaves(jax.tree.map(lambda t: t[1], tp)), jax.tree.leaves(one), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # data parallel over the devices there are (one here): the same step
    dp, _, _ = trainer.data_parallel_step(p1, trainer.init(p1), clamps)
    for a, b in zip(jax.tree.leaves(dp), jax.tree.leaves(one), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # a checkpoint of the 4-D kernels round-trips into a template
    save_checkpoint(tmp_path / "best", {"params": params}, {"model": "pc_network"})
    like = {"params": jax.eval_shape(net.init, jax.random.key(0))}
    back, _ = load_tree(tmp_path / "best", like)
    for a, b in zip(jax.tree.leaves(back["params"]), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_generative_deconv_network_settles_to_lower_energy():
    net = PCNetwork(
        [
            Node("z", 8, cell=GaussianErrorCell()),
            Node("h", (3, 3, 4), {"z": Sequential((Dense(8, 36, "tanh"), Reshape(36, (3, 3, 4))))}),
            Node("x", (6, 6, 1), {"h": ConvTranspose2d((3, 3, 4), 1, 4, 2, "SAME", "sigmoid")}),
        ]
    )
    params = net.init(jax.random.key(0))
    # an image the network can make: the forward sweep of a code z*; inference starts from z = 0
    target = net.forward(params, {"z": 2 * jax.random.normal(jax.random.key(1), (4, 8))})
    image = target["x"]
    res = PCTrainer(net, optimizer_x=optax.sgd(0.2), T=40).infer(params, {"x": image})
    assert res.states["z"].shape == (4, 8) and res.states["h"].shape == (4, 3, 3, 4)
    const = 0.5 * math.log(2 * math.pi) * 4 * (8 + 36 + 36)
    trace = np.asarray(res.energy) - const
    assert np.all(np.diff(trace) <= 1e-4 * trace[0]) and trace[-1] < 0.9 * trace[0], trace[[0, -1]]
    assert float(jnp.max(jnp.abs(res.states["z"]))) > 0.1  # the code moved (through the deconv's gradient)


def test_config_builds_a_conv_network_and_rejects_bad_tables():
    cfg = PCFitConfig(network=NetworkSection(dims=(784, 16, 10), conv_channels=(2, 3), conv_padding="valid"))
    net = build_network(cfg)
    assert net.names == ("x", "c1", "c2", "h1", "y")
    assert [n.dim for n in net.nodes] == [(28, 28, 1), (13, 13, 2), (5, 5, 3), 16, 10]
    one = build_network(
        PCFitConfig(network=NetworkSection(dims=(784, 10), conv_channels=(2,), pool="avg", hidden="transform"))
    )
    assert one.names == ("x", "y") and one.nodes[1].dim == 10
    with pytest.raises(ConfigError, match="network.conv_channels"):
        NetworkSection(task="generative", dims=(64, 784), conv_channels=(2,))
    with pytest.raises(ConfigError, match="network.dims"):
        NetworkSection(dims=(784, 10), conv_channels=(2,), image_shape=(32, 32, 3))
    with pytest.raises(ConfigError, match=r"network.names"):
        NetworkSection(dims=(784, 16, 10), conv_channels=(2,), names=("x", "h", "y"))
