"""Oracle tests for general PC networks: closed-form posteriors, backprop, scipy densities, bad input.

Oracles: the Gaussian posterior mean by conditioning the joint normal in float64 NumPy; ``jax.grad``
of the backprop loss (Whittington & Bogacz 2017's limit); ``scipy.stats`` log densities; the local
Hebbian rule ``dE/dW = -x_parent^T eps / batch`` written out by hand.
"""

from __future__ import annotations

import math

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from predcode.cells import BernoulliErrorCell, GaussianErrorCell, LaplacianErrorCell
from predcode.dynamics import infer
from predcode.learning.pc import PCTrainer, weight_gradient
from predcode.models.network import Dense, NetworkError, Node, PCNetwork


def _cosine(a, b) -> float:
    a, b = jax.flatten_util.ravel_pytree(a)[0], jax.flatten_util.ravel_pytree(b)[0]
    return float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


# ----- inference -------------------------------------------------------------------------------


@pytest.mark.slow  # long inference scans (about 20-30 s on a loaded 2-core machine)
def test_linear_gaussian_inference_converges_to_closed_form_posterior_mean(x64):
    """z ~ N(0, Sz), h | z ~ N(A z + a, Sh), x | h ~ N(B h + b, Sx), x clamped: E[z, h | x]."""
    rng = np.random.default_rng(0)
    nz, nh, nx, batch = 3, 5, 8, 4
    net = PCNetwork(
        [
            Node("z", nz, cell=GaussianErrorCell("diagonal"), sigma_init=rng.uniform(0.5, 2.0, nz)),
            Node("h", nh, {"z": Dense(nz, nh)}, cell=GaussianErrorCell("scalar"), sigma_init=0.7),
            Node(
                "x",
                nx,
                {"h": Dense(nh, nx)},
                cell=GaussianErrorCell("full"),
                sigma_init=(lambda m: m @ m.T / nx + 0.5 * np.eye(nx))(rng.normal(size=(nx, nx))),
            ),
        ]
    )
    params = net.init(jax.random.key(0))
    params["edges"]["h"]["z"]["b"] = jnp.asarray(rng.normal(size=nh))
    params["edges"]["x"]["h"]["b"] = jnp.asarray(rng.normal(size=nx))
    x = rng.normal(size=(batch, nx))

    # Joint normal of (z, h, x) and conditioning on x, all in float64 NumPy.
    A, a = np.asarray(params["edges"]["h"]["z"]["w"]).T, np.asarray(params["edges"]["h"]["z"]["b"])
    B, b = np.asarray(params["edges"]["x"]["h"]["w"]).T, np.asarray(params["edges"]["x"]["h"]["b"])
    Sz, Sh, Sx = (np.asarray(net.covariance(params, n)) for n in ("z", "h", "x"))
    m = np.concatenate([np.zeros(nz), a, B @ a + b])
    L = np.block(
        [
            [np.eye(nz), np.zeros((nz, nh)), np.zeros((nz, nx))],
            [A, np.eye(nh), np.zeros((nh, nx))],
            [B @ A, B, np.eye(nx)],
        ]
    )  # (z, h, x) = m + L (noise_z, noise_h, noise_x)
    S = L @ np.diag(np.r_[np.diag(Sz), np.zeros(nh + nx)]) @ L.T
    S += L[:, nz : nz + nh] @ Sh @ L[:, nz : nz + nh].T + L[:, nz + nh :] @ Sx @ L[:, nz + nh :].T
    k = nz + nh
    post = m[:k] + (S[:k, k:] @ np.linalg.solve(S[k:, k:], (x - m[k:]).T)).T

    result = infer(net, params, {"x": jnp.asarray(x)}, T=4000, optimizer=optax.sgd(0.05))
    got = np.concatenate([np.asarray(result.states["z"]), np.asarray(result.states["h"])], axis=1)
    np.testing.assert_allclose(got, post, rtol=1e-6, atol=1e-7)
    assert np.all(np.diff(np.asarray(result.energy)) <= 1e-9), "gradient descent never raises the energy"
    assert int(result.status) == 0


def test_inference_moves_only_free_states_and_keeps_clamps():
    net = PCNetwork.chain([6, 5, 4], names=["z", "h", "x"], activation="tanh")
    params = net.init(jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (3, 4))
    result = infer(net, params, {"x": x}, T=30)
    np.testing.assert_array_equal(np.asarray(result.states["x"]), np.asarray(x))
    assert float(jnp.abs(result.states["z"]).sum()) > 0  # the free code moved from its zero start
    assert result.energy[-1] < result.energy[0]


# ----- learning --------------------------------------------------------------------------------


@pytest.mark.slow  # long inference scans (about 20-30 s on a loaded 2-core machine)
def test_pc_weight_update_approaches_backprop_gradient_with_large_T():
    """Whittington & Bogacz: at equilibrium, with a weak output layer (variance >> hidden), the PC
    weight gradient is parallel to the backprop gradient; short inference is not."""
    x = jax.random.normal(jax.random.key(1), (16, 20))
    net = PCNetwork.chain(
        [20, 30, 30, 5], names=["x", "h1", "h2", "y"], activation="tanh", output_cell=GaussianErrorCell(sigma=1000.0)
    )
    params = net.init(jax.random.key(0))
    y = net.forward(params, {"x": x})["y"] + jax.random.normal(jax.random.key(2), (16, 5))

    def bp_loss(p):
        return jnp.mean(0.5 * jnp.sum((y - net.forward(p, {"x": x})["y"]) ** 2, axis=-1))

    g_bp = jax.grad(bp_loss)(params)
    cos = {}
    for T in (0, 20, 500):
        states = infer(net, params, {"x": x, "y": y}, T=T, optimizer=optax.sgd(0.1)).states
        cos[T] = _cosine(weight_gradient(net, params, states)[1], g_bp)
    assert cos[0] < 0.7 < cos[20] < cos[500]
    assert cos[500] > 0.9999, cos


def test_dense_weight_gradient_is_the_local_hebbian_rule():
    net = PCNetwork.chain([6, 5, 4], names=["x", "h", "y"], activation="tanh")
    params = net.init(jax.random.key(3))
    states = {
        "x": jax.random.normal(jax.random.key(4), (7, 6)),
        "h": jax.random.normal(jax.random.key(5), (7, 5)),
        "y": jax.random.normal(jax.random.key(6), (7, 4)),
    }
    _, g = weight_gradient(net, params, states)
    w, b = params["edges"]["h"]["x"]["w"], params["edges"]["h"]["x"]["b"]
    pre = states["x"] @ w + b
    eps = (states["h"] - jnp.tanh(pre)) * (1 - jnp.tanh(pre) ** 2)  # error times act'
    np.testing.assert_allclose(g["edges"]["h"]["x"]["w"], -states["x"].T @ eps / 7, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g["edges"]["h"]["x"]["b"], -eps.sum(0) / 7, rtol=1e-5, atol=1e-6)
    eps_y = states["y"] - states["h"] @ params["edges"]["y"]["h"]["w"] - params["edges"]["y"]["h"]["b"]
    np.testing.assert_allclose(g["edges"]["y"]["h"]["w"], -states["h"].T @ eps_y / 7, rtol=1e-5, atol=1e-6)


def test_trainer_step_learns_a_linear_map_and_its_noise_variance():
    """Supervised PC on y = M x + noise (var 0.09): the weights approach M and the learned scalar
    variance of the output cell approaches the noise variance."""
    rng = np.random.default_rng(0)
    M = rng.normal(size=(4, 3))
    net = PCNetwork([Node("x", 4), Node("y", 3, {"x": Dense(4, 3)}, cell=GaussianErrorCell("scalar"))])
    trainer = PCTrainer(net, optimizer_x=optax.sgd(0.1), optimizer_p=optax.adam(3e-2), T=5)
    params = net.init(jax.random.key(0))
    opt_state = trainer.init(params)
    for _ in range(400):
        x = rng.normal(size=(64, 4)).astype(np.float32)
        y = (x @ M + 0.3 * rng.normal(size=(64, 3))).astype(np.float32)
        params, opt_state, metrics = trainer.step(params, opt_state, {"x": x, "y": y})
    np.testing.assert_allclose(params["edges"]["y"]["x"]["w"], M, atol=0.08)
    assert abs(float(jnp.exp(params["cells"]["y"]["log_var"])) - 0.09) < 0.02
    assert metrics.energy_trace.shape == (6,) and int(metrics.status) == 0


# ----- cells through the network, against scipy ---------------------------------------------------


def _single(cell, dim, **kw) -> PCNetwork:
    return PCNetwork([Node("u", 2), Node("v", dim, {"u": Dense(2, dim, bias=False)}, cell=cell, **kw)])


def test_full_covariance_energy_is_scipy_multivariate_normal_nll(x64):
    rng = np.random.default_rng(1)
    n = 5
    a = rng.normal(size=(n, n))
    cov = a @ a.T + 0.3 * np.eye(n)
    net = _single(GaussianErrorCell("full"), n, sigma_init=cov)
    params = net.init(jax.random.key(0))
    states = {"u": jnp.asarray(rng.normal(size=(6, 2))), "v": jnp.asarray(rng.normal(size=(6, n)))}
    mu = np.asarray(states["u"] @ params["edges"]["v"]["u"]["w"])
    want = [-scipy.stats.multivariate_normal(mu[i], cov).logpdf(np.asarray(states["v"][i])) for i in range(6)]
    np.testing.assert_allclose(net.energies(params, states)["v"], want, rtol=1e-10)
    np.testing.assert_allclose(net.covariance(params, "v"), cov, rtol=1e-10)


@pytest.mark.parametrize("kind", ["scalar", "diagonal"])
def test_scalar_and_diagonal_covariance_energy_is_scipy_nll(kind, x64):
    rng = np.random.default_rng(2)
    var = 0.6 if kind == "scalar" else rng.uniform(0.2, 3, 4)
    net = _single(GaussianErrorCell(kind), 4, sigma_init=var)
    params = net.init(jax.random.key(0))
    states = {"u": jnp.asarray(rng.normal(size=(3, 2))), "v": jnp.asarray(rng.normal(size=(3, 4)))}
    mu = np.asarray(states["u"] @ params["edges"]["v"]["u"]["w"])
    want = -scipy.stats.norm(mu, np.sqrt(var)).logpdf(np.asarray(states["v"])).sum(-1)
    np.testing.assert_allclose(net.energies(params, states)["v"], want, rtol=1e-10)


def test_laplacian_and_bernoulli_energies_are_scipy_nll(x64):
    rng = np.random.default_rng(3)
    u = jnp.asarray(rng.normal(size=(3, 2)))
    lap = _single(LaplacianErrorCell(scale=0.7), 4)
    p = lap.init(jax.random.key(0))
    v = jnp.asarray(rng.normal(size=(3, 4)))
    mu = np.asarray(u @ p["edges"]["v"]["u"]["w"])
    np.testing.assert_allclose(
        lap.energies(p, {"u": u, "v": v})["v"], -scipy.stats.laplace(mu, 0.7).logpdf(np.asarray(v)).sum(-1), rtol=1e-10
    )
    ber = PCNetwork([Node("u", 2), Node("v", 4, {"u": Dense(2, 4, "sigmoid")}, cell=BernoulliErrorCell())])
    p = ber.init(jax.random.key(1))
    v = jnp.asarray(rng.integers(0, 2, size=(3, 4)).astype(float))
    prob = np.asarray(jax.nn.sigmoid(u @ p["edges"]["v"]["u"]["w"] + p["edges"]["v"]["u"]["b"]))
    np.testing.assert_allclose(
        ber.energies(p, {"u": u, "v": v})["v"], -scipy.stats.bernoulli(prob).logpmf(np.asarray(v)).sum(-1), rtol=1e-9
    )


@pytest.mark.parametrize(
    "cell",
    [GaussianErrorCell("diagonal"), LaplacianErrorCell(), BernoulliErrorCell()],
    ids=["gaussian", "laplacian", "bernoulli"],
)
def test_masks_zero_the_masked_units_errors_and_energy(cell, x64):
    rng = np.random.default_rng(4)
    act = "sigmoid" if isinstance(cell, BernoulliErrorCell) else "identity"
    net = PCNetwork([Node("u", 2), Node("v", 5, {"u": Dense(2, 5, act)}, cell=cell)])
    params = net.init(jax.random.key(0))
    u = jnp.asarray(rng.normal(size=(3, 2)))
    v = jnp.asarray(rng.uniform(0.1, 0.9, size=(3, 5)))
    mask = jnp.asarray([[1, 0, 1, 1, 0]] * 3, float)
    keep = np.array([0, 2, 3])
    sub = PCNetwork([Node("u", 2), Node("v", 3, {"u": Dense(2, 3, act)}, cell=cell)])
    sub_params = jax.tree.map(lambda a: a, params)
    sub_params["edges"]["v"]["u"] = {k: a[..., keep] for k, a in params["edges"]["v"]["u"].items()}
    if "v" in params["cells"]:
        sub_params["cells"]["v"] = {"log_var": params["cells"]["v"]["log_var"][keep]}
    masked = net.energies(params, {"u": u, "v": v}, masks={"v": mask})["v"]
    np.testing.assert_allclose(masked, sub.energies(sub_params, {"u": u, "v": v[:, keep]})["v"], rtol=1e-10)
    grad = jax.grad(lambda s: net.energy(params, {"u": u, "v": s}, masks={"v": mask}))(v)
    np.testing.assert_array_equal(np.asarray(grad)[:, [1, 4]], 0.0)


# ----- structure -------------------------------------------------------------------------------


def test_forward_sweep_is_the_mlp_and_leaves_only_the_normalizing_constant():
    net = PCNetwork.chain([6, 5, 4], names=["x", "h", "y"], activation="relu")
    params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (3, 6))
    states = net.forward(params, {"x": x})
    e = params["edges"]
    mlp = jax.nn.relu(x @ e["h"]["x"]["w"] + e["h"]["x"]["b"]) @ e["y"]["h"]["w"] + e["y"]["h"]["b"]
    np.testing.assert_allclose(states["y"], mlp, rtol=1e-6)
    np.testing.assert_allclose(net.energy(params, states), 3 * 0.5 * 9 * math.log(2 * math.pi), rtol=1e-6)


def test_dag_node_prediction_sums_its_inputs():
    net = PCNetwork([Node("a", 3), Node("b", 2), Node("c", 4, {"a": Dense(3, 4), "b": Dense(2, 4, "tanh")})])
    params = net.init(jax.random.key(0))
    s = {"a": jnp.ones((2, 3)), "b": -jnp.ones((2, 2))}
    pa, pb = params["edges"]["c"]["a"], params["edges"]["c"]["b"]
    want = s["a"] @ pa["w"] + pa["b"] + jnp.tanh(s["b"] @ pb["w"] + pb["b"])
    np.testing.assert_allclose(net.prediction(params, s, "c"), want, rtol=1e-6)


def test_size_mismatch_names_the_layer():
    with pytest.raises(NetworkError, match=r"node 'h2': the transform from 'h1' takes 128 units but node 'h1' has 256"):
        PCNetwork([Node("x", 784), Node("h1", 256, {"x": Dense(784, 256)}), Node("h2", 64, {"h1": Dense(128, 64)})])
    with pytest.raises(NetworkError, match=r"node 'y': the transform from 'h' gives 12 units but node 'y' has 10"):
        PCNetwork([Node("h", 5), Node("y", 10, {"h": Dense(5, 12)})])


def test_non_positive_definite_covariance_names_the_node():
    bad = np.array([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(
        NetworkError,
        match=r"node 'out': sigma_init: expected a positive-definite covariance, "
        r"got smallest eigenvalue -1",
    ):
        Node("out", 2, {"h": Dense(3, 2)}, cell=GaussianErrorCell("full"), sigma_init=bad)
    with pytest.raises(NetworkError, match=r"node 'out': sigma_init: expected positive variances"):
        Node("out", 2, {"h": Dense(3, 2)}, cell=GaussianErrorCell("diagonal"), sigma_init=[1.0, -1.0])


def test_clamp_on_missing_node_names_it_and_the_nodes():
    net = PCNetwork.chain([4, 3], names=["x", "y"])
    params = net.init(jax.random.key(0))
    with pytest.raises(NetworkError, match=r"clamp on node 'label': no such node; the network has \['x', 'y'\]"):
        infer(net, params, {"x": jnp.zeros((2, 4)), "label": jnp.zeros((2, 3))}, T=3)
    with pytest.raises(NetworkError, match=r"clamp on node 'y': expected shape \(batch, 3\), got \(2, 5\)"):
        net.forward(params, {"y": jnp.zeros((2, 5))})


def test_input_from_an_unknown_or_later_node_is_an_error():
    with pytest.raises(NetworkError, match=r"node 'h': input 'z' does not exist"):
        PCNetwork([Node("x", 2), Node("h", 3, {"z": Dense(2, 3)})])
    with pytest.raises(NetworkError, match=r"node 'h': input 'x' is listed after it"):
        PCNetwork([Node("h", 3, {"x": Dense(2, 3)}), Node("x", 2)])


def test_sequential_transform_is_the_composed_mlp_and_checks_inner_sizes():
    from predcode.models.network import Sequential

    seq = Sequential((Dense(3, 5, "tanh"), Dense(5, 2, "sigmoid")))
    net = PCNetwork([Node("z", 3), Node("x", 2, {"z": seq}, cell=BernoulliErrorCell())])
    params = net.init(jax.random.key(0))
    z = jax.random.normal(jax.random.key(1), (4, 3))
    p = params["edges"]["x"]["z"]
    want = jax.nn.sigmoid(jnp.tanh(z @ p["0"]["w"] + p["0"]["b"]) @ p["1"]["w"] + p["1"]["b"])
    np.testing.assert_allclose(net.prediction(params, {"z": z}, "x"), want, rtol=1e-6)
    with pytest.raises(NetworkError, match=r"Sequential.layers\[1\]: takes 4 units but layers\[0\] gives 5"):
        Sequential((Dense(3, 5), Dense(4, 2)))


def test_dense_input_activation_is_whittington_bogacz_w_f_x():
    d = Dense(3, 2, input_activation="tanh")
    p = d.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 3))
    np.testing.assert_allclose(d(p, x), jnp.tanh(x) @ p["w"] + p["b"], rtol=1e-6)
    with pytest.raises(ValueError, match="Dense.input_activation"):
        Dense(3, 2, input_activation="swish")


def test_vmapped_trials_and_the_data_parallel_step_equal_separate_single_device_steps():
    from predcode.learning.pc import PCTrainer

    net = PCNetwork.chain([6, 5, 4], names=["x", "h", "y"], activation="tanh")
    trainer = PCTrainer(net, optimizer_p=optax.adam(1e-2), T=5)
    keys = jax.random.split(jax.random.key(0), 2)
    params = [net.init(k) for k in keys]
    opts = [trainer.init(p) for p in params]
    clamps = [
        {"x": jax.random.normal(jax.random.key(10 + t), (8, 6)), "y": jax.random.normal(jax.random.key(20 + t), (8, 4))}
        for t in range(2)
    ]
    stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
    got, _, metrics = trainer.trials_step(stack(params), stack(opts), stack(clamps))
    for t in range(2):
        want, _, m = trainer.step(params[t], opts[t], clamps[t])
        jax.tree.map(lambda a, b, t=t: np.testing.assert_allclose(a[t], b, rtol=1e-5, atol=1e-6), got, want)
        np.testing.assert_allclose(metrics.energy[t], m.energy, rtol=1e-5)
    dp, _, dpm = trainer.data_parallel_step(params[0], opts[0], clamps[0])
    want, _, m = trainer.step(params[0], opts[0], clamps[0])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), dp, want)
    np.testing.assert_allclose(dpm.energy, m.energy, rtol=1e-5)
