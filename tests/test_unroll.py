"""``unroll``: the settling loop compiled with several state steps per iteration (lax.scan's
``unroll``) against a plain Python loop of the same steps written out here (jax.grad of the
energy written out by hand, one optax update per step), for inference, a training step of PC,
nudged PC and iPC; and its bad values, named."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from predcode.dynamics import AdaptiveHeun
from predcode.dynamics.settle import infer, settle
from predcode.experiments.config import ConfigError, load_config, with_overrides
from predcode.learning.incremental import Incremental
from predcode.learning.nudging import Nudged
from predcode.learning.pc import PCTrainer
from predcode.learning.trainer import EnergyGradient
from predcode.models.conv import Conv2d, Flatten, MaxPool2d
from predcode.models.network import Dense, Node, PCNetwork, Sequential

TOL = dict(rtol=1e-10, atol=1e-10)
T = 5


def _net():
    conv = Conv2d((6, 6, 1), 2, 3, activation="relu")
    return PCNetwork(
        [
            Node("x", (6, 6, 1)),
            Node("c", (3, 3, 2), {"x": Sequential((conv, MaxPool2d(conv.out_dim)))}),
            Node("h", 4, {"c": Sequential((Flatten((3, 3, 2)), Dense(18, 4, "tanh")))}),
            Node("y", 2, {"h": Dense(4, 2)}),
        ]
    )


def _data():
    rng = np.random.default_rng(3)
    return {"x": jnp.asarray(rng.normal(size=(4, 6, 6, 1))), "y": jnp.asarray(rng.normal(size=(4, 2)))}


def _python_loop(net, params, clamps, solver, steps):
    """The oracle: ``steps`` optax updates of the free states on jax.grad of the total energy, in Python."""
    free = {k: v for k, v in net.forward(params, clamps).items() if k not in clamps}
    opt = solver.init(free)
    trace = []

    def energy(f):
        return net.energy(params, {**clamps, **f})

    for _ in range(steps):
        e, g = jax.value_and_grad(energy)(free)
        trace.append(e)
        updates, opt = solver.update(g, opt, free)
        free = optax.apply_updates(free, updates)
    trace.append(energy(free))
    return free, jnp.stack(trace)


@pytest.mark.parametrize("unroll", [1, 2, T, 100])
def test_infer_with_unroll_equals_a_python_loop_of_the_steps(x64, unroll):
    net, clamps = _net(), _data()
    params = net.init(jax.random.key(0))
    solver = optax.sgd(0.05, momentum=0.5)
    got = jax.jit(lambda p: infer(net, p, clamps, T=T, optimizer=solver, unroll=unroll))(params)
    want, trace = _python_loop(net, params, clamps, solver, T)
    for k, v in want.items():
        np.testing.assert_allclose(np.asarray(got.states[k]), np.asarray(v), **TOL)
    np.testing.assert_allclose(np.asarray(got.energy), np.asarray(trace), **TOL)


@pytest.mark.parametrize("rule", ["pc", "nudged", "ipc"])
def test_a_training_step_with_unroll_equals_the_python_loop_oracle(x64, rule):
    net, clamps = _net(), _data()
    params = net.init(jax.random.key(1))
    solver, opt = optax.sgd(0.05), optax.sgd(0.01)

    def make(unroll):
        if rule == "pc":
            return EnergyGradient(T, solver, unroll)
        if rule == "nudged":
            return Nudged(T, solver, beta=0.5, mode="centred", unroll=unroll)
        return Incremental(T, solver, unroll=unroll)

    results = []
    for unroll in (1, T):
        trainer = PCTrainer(net, optimizer_p=opt, rule=make(unroll))
        assert trainer.unroll == unroll
        new, _, metrics = trainer.step(params, trainer.init(params), clamps)
        results.append((new, metrics))
    (a, ma), (b, mb) = results
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL)
    np.testing.assert_allclose(np.asarray(ma.energy_trace), np.asarray(mb.energy_trace), **TOL)
    if rule == "pc":  # and both equal PC written out: the Python loop's states, then the weight gradient
        free, _ = _python_loop(net, params, clamps, solver, T)
        states = jax.lax.stop_gradient({**clamps, **free})
        grads = jax.grad(lambda p: net.energy(p, states) / 4)(params)
        want = optax.apply_updates(params, opt.update(grads, opt.init(params))[0])
        for x, y in zip(jax.tree.leaves(b), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL)


def test_the_trainer_passes_unroll_to_its_rule_and_to_inference(x64):
    net, clamps = _net(), _data()
    params = net.init(jax.random.key(2))
    trainer = PCTrainer(net, optimizer_x=optax.sgd(0.05), T=T, unroll=T)
    assert trainer.rule.unroll == T
    got = trainer.infer(params, clamps)
    want, trace = _python_loop(net, params, clamps, optax.sgd(0.05), T)
    np.testing.assert_allclose(np.asarray(got.energy), np.asarray(trace), **TOL)


def test_bad_unroll_is_named():
    net, clamps = _net(), _data()
    params = net.init(jax.random.key(0))
    term = net.term(params, clamps)
    free = {k: v for k, v in net.forward(params, clamps).items() if k not in clamps}
    with pytest.raises(ValueError, match=r"unroll: expected an integer in \[1, "):
        settle(term, free, steps=3, unroll=0)
    with pytest.raises(ValueError, match=r"unroll: expected 1 with tol"):
        settle(term, free, steps=3, tol=1e-3, unroll=2)
    with pytest.raises(ValueError, match=r"unroll: expected 1 with AdaptiveHeun"):
        settle(term, free, steps=3, solver=AdaptiveHeun(), unroll=2)
    with pytest.raises(ValueError, match=r"unroll: expected an integer"):
        EnergyGradient(T, None, 1.5)
    cfg = load_config("configs/pc/fashion_mnist_conv.toml")
    assert with_overrides(cfg, **{"inference.unroll": 8}).inference.rule().unroll == 8
    with pytest.raises(ConfigError, match=r"inference.unroll: expected an integer in \[1, "):
        with_overrides(cfg, **{"inference.unroll": 0})
    with pytest.raises(ConfigError, match=r'inference.unroll: expected 1 with optimizer = "adaptive_heun"'):
        with_overrides(cfg, **{"inference.unroll": 4, "inference.optimizer": "adaptive_heun"})
