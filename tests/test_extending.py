"""Extending predcode: a new error cell, a new solver and a new learning rule, each in a few lines,
each run on a museum model and on a general PC network (docs/architecture.md shows the same code).

Oracles: the drive of a settle is minus ``jax.grad`` of the energy the cell defines; a solver's step
is its textbook formula evaluated by hand; a rule's update is its definition computed by hand.
"""

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import predcode
from predcode import GNCN, CellOutput, GNCNConfig, PCNetwork
from predcode.cells import BernoulliErrorCell, LaplacianErrorCell
from predcode.dynamics import AbstractSolver, Euler, settle

# ----- the extensions, written as a user would -------------------------------------------------


@dataclass(frozen=True)
class CauchyErrorCell:
    """-log Cauchy(target; mu, gamma): log(pi gamma) + log(1 + (e / gamma)^2)."""

    gamma: float = 1.0

    def __call__(self, target, mu, *, mask=None, modulator=None):
        e = target - mu
        if mask is not None:
            e = e * mask
        r = e / self.gamma
        energy = jnp.sum(jnp.log1p(r * r) + math.log(math.pi * self.gamma), axis=-1)
        dmu = 2 * r / (self.gamma * (1 + r * r))  # d log p / d mu
        return CellOutput(e, dmu, -dmu, energy)


@dataclass(frozen=True)
class Midpoint(AbstractSolver):
    """RK2 midpoint: z <- z + dt f(z + dt/2 f(z))."""

    dt: float = 0.1
    evaluations = 2

    def advance(self, states, aux, dz, field):
        half = jax.tree.map(lambda z, d: z + 0.5 * self.dt * d, states, dz)
        return jax.tree.map(lambda z, d: z + self.dt * d, states, field(half)), aux


@dataclass(frozen=True)
class WeightDecay:
    """Any rule plus decoupled weight decay on every array it updates: grads + wd * params."""

    rule: object
    wd: float = 1e-2

    def init(self, model, params):
        return self.rule.init(model, params)

    def update(self, model, params, state, *batch):
        grads, state = self.rule.update(model, params, state, *batch)
        return _decay(grads, params, self.wd), state


def _decay(grads, params, wd):
    if isinstance(grads, dict) and isinstance(params, dict) and set(grads) != set(params):
        params = {k: params[k] for k in grads}
    return jax.tree.map(lambda g, p: g + wd * p, grads, params)


# ----- shared fixtures -----------------------------------------------------------------------


def _t1(x_cell=None, **config):
    return GNCN(GNCNConfig(kind="gncn_t1", x_dim=30, z_dims=(12, 10, 8), **config), x_cell=x_cell)


def _t1_batch():
    key = jax.random.key(4)
    x = (jax.random.uniform(key, (5, 30)) < 0.5).astype(jnp.float32)
    states = tuple(0.3 * jax.random.normal(jax.random.fold_in(key, i), (5, d)) for i, d in enumerate((12, 10, 8)))
    return x, states


def _t1_energy(model, params, x, image_energy):
    c = model.config

    def energy(states):
        z1, z2, z3 = states
        mu0 = jax.nn.sigmoid(jnp.tanh(z1) @ params["W1"])
        e1 = z1 - jnp.tanh(z2) @ params["W2"]
        e2 = z2 - jnp.tanh(z3) @ params["W3"]
        reg = sum(c.lmbda * jnp.sum(jnp.abs(z)) + c.leak / 2 * jnp.sum(z * z) for z in states)
        return image_energy(x, mu0) + 0.5 * jnp.sum(e1**2) + 0.5 * jnp.sum(e2**2) + reg

    return energy


def _net(cell=None):
    return PCNetwork.chain([6, 5, 4], names=["x", "h", "y"], activation="tanh", cell=cell)


def _net_batch(net):
    params = net.init(jax.random.key(0))
    clamps = {"x": jax.random.normal(jax.random.key(1), (3, 6)), "y": jax.random.normal(jax.random.key(2), (3, 4))}
    return params, clamps


# ----- a new cell ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell, image_energy",
    [
        (CauchyErrorCell(0.5), lambda x, mu: jnp.sum(jnp.log1p(((x - mu) / 0.5) ** 2))),
        (LaplacianErrorCell(), lambda x, mu: jnp.sum(jnp.abs(x - mu))),
        (BernoulliErrorCell(), lambda x, mu: -jnp.sum(x * jnp.log(mu) + (1 - x) * jnp.log1p(-mu))),
    ],
    ids=["cauchy", "laplacian", "bernoulli"],
)
def test_a_museum_image_cell_swapped_gives_the_drive_of_its_energy(x64, cell, image_energy):
    # GNCN-t1 with tied feedback is an energy model: with the image error sent up as the gradient
    # at the output activation's input, the museum's drive is -dE/dz for the swapped cell too.
    model = _t1(cell, x_signal="pre_activation")
    params = {k: v * 6 for k, v in model.init(jax.random.key(3)).items()}
    x, states = _t1_batch()
    _, _, sigs = model.term(params, x).predict(states)
    drive = model.term(params, x).drive(states, sigs)
    grad = jax.grad(_t1_energy(model, params, x, image_energy))(states)
    for d, g in zip(drive, grad):
        np.testing.assert_allclose(d, -g, rtol=1e-6, atol=1e-9)


def test_a_bernoulli_image_cell_on_the_logits_is_the_museum_model_exactly():
    # The museum's image error x - mu is the Bernoulli log-likelihood's gradient at the logits, so
    # x_cell = "bernoulli" with x_signal = "pre_activation" reproduces GNCN-PDH (float rounding).
    x = (jax.random.uniform(jax.random.key(0), (4, 784)) < 0.3).astype(jnp.float32)
    museum = GNCN(GNCNConfig(kind="gncn_pdh", z_dims=(36, 36, 36), K=10))
    swapped = GNCN(
        GNCNConfig(kind="gncn_pdh", z_dims=(36, 36, 36), K=10, x_cell="bernoulli", x_signal="pre_activation")
    )
    params = museum.init(jax.random.key(1))
    a, b = museum.settle(params, x), swapped.settle(params, x)
    for za, zb in zip(a.states, b.states):
        np.testing.assert_allclose(za, zb, rtol=1e-4, atol=1e-6)
    trainer = predcode.make_trainer(swapped)
    new, _, metrics = trainer.step(params, trainer.init(params), x, jnp.ones(4))
    assert int(metrics.status) == 0 and bool(jnp.isfinite(metrics.bce))


def test_a_new_cell_in_a_pc_network_settles_down_its_energy(x64):
    net = _net(CauchyErrorCell(0.5))
    params, clamps = _net_batch(net)
    h0 = net.init_states(params, clamps)["h"] + 0.3
    full = lambda h: net.energy(params, {**clamps, "h": h})
    res = settle(net.term(params, clamps), {"h": h0}, steps=2, solver=Euler(0.05))
    np.testing.assert_allclose(res.states["h"], h0 - 0.05 * jax.grad(full)(h0), rtol=1e-10)
    long = predcode.dynamics.infer(net, params, clamps, T=200, init={"h": h0}, optimizer=Euler(0.05))
    assert float(long.energy[-1]) < float(long.energy[0])


# ----- a new solver ------------------------------------------------------------------------------


def test_a_new_solver_settles_a_museum_model_with_its_own_formula(x64):
    model = _t1()
    params = model.init(jax.random.key(3))
    x, states = _t1_batch()
    term = model.term(params, x)
    field = lambda z: term.drive(z, term.predict(z)[2])
    res = settle(term, states, steps=2, solver=Midpoint(0.1))
    half = tuple(z + 0.05 * d for z, d in zip(states, field(states)))
    want = tuple(z + 0.1 * d for z, d in zip(states, field(half)))
    for got, w in zip(res.states, want):
        np.testing.assert_allclose(got, w, rtol=1e-12)
    # and through the model's own entry point and the trainer
    assert int(model.settle(params, x, solver=Midpoint(0.1)).status) == 0
    trainer = predcode.make_trainer(model, solver=Midpoint(0.1))
    _, _, metrics = trainer.step(params, trainer.init(params), x, jnp.ones(5))
    assert int(metrics.status) == 0


def test_a_new_solver_settles_a_pc_network_with_its_own_formula(x64):
    net = _net()
    params, clamps = _net_batch(net)
    h0 = net.init_states(params, clamps)["h"] + 0.3
    grad = jax.grad(lambda h: net.energy(params, {**clamps, "h": h}))
    res = predcode.dynamics.infer(net, params, clamps, T=1, init={"h": h0}, optimizer=Midpoint(0.1))
    np.testing.assert_allclose(res.states["h"], h0 - 0.1 * grad(h0 - 0.05 * grad(h0)), rtol=1e-12)
    trainer = predcode.make_trainer(net, optax.sgd(0.01), solver=Midpoint(0.1), T=5)
    _, _, metrics = trainer.step(params, trainer.init(params), clamps)
    assert int(metrics.status) == 0 and metrics.energy_trace.shape == (6,)


def test_an_optax_optimizer_is_a_solver_for_every_model():
    model = _t1()
    params = model.init(jax.random.key(3))
    x, _ = _t1_batch()
    a = model.settle(params, x)
    b = model.settle(params, x, solver=optax.sgd(model.config.beta))  # descends -dz: Euler
    for za, zb in zip(a.states, b.states):
        np.testing.assert_array_equal(za, zb)


# ----- a new rule ----------------------------------------------------------------------------------


def test_a_new_rule_trains_a_museum_model_and_a_pc_network(x64):
    model = _t1()
    params = model.init(jax.random.key(3))
    x, _ = _t1_batch()
    base = predcode.Hebbian()
    g_base, _ = base.update(model, params, (), x, jnp.ones(5))
    g_new, _ = WeightDecay(base, 0.1).update(model, params, (), x, jnp.ones(5))
    for name in g_base:
        np.testing.assert_allclose(g_new[name], g_base[name] + 0.1 * params[name], rtol=1e-12)
    trainer = predcode.make_trainer(model, optax.sgd(0.01), rule=WeightDecay(base, 0.1))
    new, _, metrics = trainer.step(params, trainer.init(params), x, jnp.ones(5))
    want = model.apply_constraints({**params, **{k: params[k] - 0.01 * g_new[k] for k in g_new}})
    for name in want:
        np.testing.assert_allclose(new[name], want[name], rtol=1e-5, atol=1e-7)  # float32 weights, jitted vs eager
    assert int(metrics.status) == 0

    net = _net()
    nparams, clamps = _net_batch(net)
    rule = WeightDecay(predcode.EnergyGradient(T=5), 0.1)
    g_net, _ = rule.update(net, nparams, (), clamps)
    g_ref, _ = predcode.EnergyGradient(T=5).update(net, nparams, (), clamps)
    jax.tree.map(lambda a, b, p: np.testing.assert_allclose(a, b + 0.1 * p, rtol=1e-12), g_net, g_ref, nparams)
    trainer = predcode.make_trainer(net, optax.sgd(0.01), rule=rule)
    new_net, _, metrics = trainer.step(nparams, trainer.init(nparams), clamps)
    jax.tree.map(lambda n, p, g: np.testing.assert_allclose(n, p - 0.01 * g, rtol=1e-9), new_net, nparams, g_net)


# ----- a rule of one family on another: feedback alignment on a PC network -----------------------


def test_feedback_alignment_trains_a_pc_network_and_is_backprop_with_the_weights_as_feedback(x64):
    net = _net()
    params, clamps = _net_batch(net)
    weights_as_feedback = [params["edges"]["h"]["x"]["w"], params["edges"]["y"]["h"]["w"]]
    fa = predcode.FeedbackAlignment(feedback=weights_as_feedback)
    grads, _ = fa.update(net, params, fa.init(net, params), clamps)

    def loss(p):  # backprop: the clamped output's energy after the feedforward sweep, batch mean
        return net.energy(p, net.forward(p, {"x": clamps["x"]}) | {"y": clamps["y"]}) / 3

    want = jax.grad(loss)(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), grads, want)

    random_fa = predcode.FeedbackAlignment(key=0)
    state = random_fa.init(net, params)
    g_fa, _ = random_fa.update(net, params, state, clamps)
    # the output layer's update does not depend on feedback; the hidden one does
    np.testing.assert_allclose(g_fa["edges"]["y"]["h"]["w"], want["edges"]["y"]["h"]["w"], rtol=1e-10)
    assert not np.allclose(g_fa["edges"]["h"]["x"]["w"], want["edges"]["h"]["x"]["w"])
    trainer = predcode.make_trainer(net, optax.sgd(0.1), rule=random_fa)
    opt_state = trainer.init(params)
    energies = []
    for _ in range(30):
        params, opt_state, metrics = trainer.step(params, opt_state, clamps)
        energies.append(float(metrics.energy))
    floor = 9 * 0.5 * math.log(2 * math.pi)  # the unit Gaussians' normalisers of h (5) and y (4)
    assert energies[-1] - floor < 0.05 * (energies[0] - floor)
