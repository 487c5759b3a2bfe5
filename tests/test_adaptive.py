"""The adaptive solver (diffrax's Heun with a PID controller and a steady-state stop) in the one settle.

Oracles: the closed-form steady state of a linear PC network, long fixed-step Euler and Heun
settles, and the step budget. Every diffrax solve compiles once, so the tests share their solves.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from predcode.dynamics import AdaptiveHeun, Euler, Heun, make_solver, settle_model
from predcode.experiments.config import ConfigError, parse_toml
from predcode.experiments.config.network import build_network
from predcode.learning import make_trainer
from predcode.models.gncn import GNCN, GNCNConfig
from predcode.models.network import PCNetwork

pytest.importorskip("diffrax")

rms = lambda a: float(jnp.sqrt(jnp.mean(jnp.square(a))))


def _linear_net():
    """x (3, clamped) -> h (4, free) -> y (2, clamped), identity transforms without bias."""
    net = PCNetwork.chain([3, 4, 2], names=["x", "h", "y"], activation="identity", bias=False)
    params = net.init(jax.random.key(0))
    rng = np.random.default_rng(1)
    clamps = {"x": jnp.asarray(rng.normal(size=(5, 3))), "y": jnp.asarray(rng.normal(size=(5, 2)))}
    return net, params, clamps


def _closed_form(params, clamps):
    """argmin_h 1/2 |h - x W1|^2 + 1/2 |y - h W2|^2 = (x W1 + y W2^T)(I + W2 W2^T)^-1."""
    w1 = np.asarray(params["edges"]["h"]["x"]["w"], np.float64)
    w2 = np.asarray(params["edges"]["y"]["h"]["w"], np.float64)
    x, y = (np.asarray(clamps[k], np.float64) for k in ("x", "y"))
    return np.linalg.solve(np.eye(4) + w2 @ w2.T, (x @ w1 + y @ w2.T).T).T


def test_it_reaches_the_closed_form_steady_state_stops_there_and_agrees_with_euler_and_heun(x64):
    net, params, clamps = _linear_net()
    exact = _closed_form(params, clamps)
    term, z0 = net.term(params, clamps), net.init_states(params, clamps)
    res, stats = AdaptiveHeun(rtol=1e-5, atol=1e-5).solve(term, z0, steps=400)
    assert int(res.status) == 0
    # the steady-state event ended it (diffrax's result 11), well inside the budget of 399 steps
    assert int(stats["result"]) == 11 and int(stats["num_steps"]) < 399 and int(res.n_steps) < 400
    assert rms(term.predict(res.states)[2]["h"]) < 1e-5 + 1e-5 * rms(res.states["h"])
    np.testing.assert_allclose(np.asarray(res.states["h"]), exact, rtol=0, atol=5e-5)
    # the trace: one entry per settle step, falling, its tail the final energy
    trace, n = np.asarray(res.energy), int(res.n_steps)
    assert trace.shape == (400,) and trace[0] > trace[-1]
    np.testing.assert_array_equal(trace[n - 1 :], trace[-1])
    assert np.all(np.diff(trace[:n]) <= 1e-9)
    np.testing.assert_allclose(trace[-1], float(net.energy(params, {**clamps, **res.states})), rtol=1e-12)
    # a looser tolerance stops at rest too, in fewer steps, farther from the steady state
    loose, loose_stats = AdaptiveHeun(rtol=1e-3, atol=1e-3).solve(term, z0, steps=400)
    assert int(loose_stats["result"]) == 11
    assert int(loose_stats["num_accepted_steps"]) < int(stats["num_accepted_steps"])
    error = lambda r: np.abs(np.asarray(r.states["h"]) - exact).max()
    assert error(res) < error(loose) < 1e-2
    # the fixed-step solvers, run long, reach the same states
    for solver in (Euler(0.1), Heun(0.1)):
        fixed = settle_model(net, params, clamps, steps=600, solver=solver).states["h"]
        np.testing.assert_allclose(np.asarray(res.states["h"]), np.asarray(fixed), rtol=0, atol=5e-5)


def test_the_budget_caps_the_steps_and_the_trace_keeps_the_settles_length():
    net, params, clamps = _linear_net()
    term, z0 = net.term(params, clamps), net.init_states(params, clamps)
    # a budget of 3 steps: the trace keeps the settle's length, the solve is cut, not failed
    capped, stats = AdaptiveHeun(rtol=1e-6, atol=1e-6, trace=False).solve(term, z0, steps=4)
    assert capped.energy.shape == (4,) and int(stats["num_steps"]) == 3 and int(capped.status) == 0
    assert int(stats["result"]) != 11  # the budget ended it, not the steady state
    one = settle_model(net, params, clamps, steps=1, solver=AdaptiveHeun())
    np.testing.assert_array_equal(np.asarray(one.states["h"]), np.asarray(z0["h"]))


def test_it_works_under_jit_vmap_and_inside_a_training_step():
    net, params, clamps = _linear_net()
    exact = _closed_form(params, clamps)
    solver = AdaptiveHeun(rtol=1e-4, atol=1e-4)
    settle_vmapped = jax.jit(jax.vmap(lambda c: settle_model(net, params, c, steps=300, solver=solver).states["h"]))
    both = settle_vmapped(jax.tree.map(lambda a: jnp.stack([a, 2 * a]), clamps))
    np.testing.assert_allclose(np.asarray(both[0]), exact, atol=1e-3)
    np.testing.assert_allclose(np.asarray(both[1]), 2 * exact, atol=2e-3)  # the steady state is linear in the clamps

    trainer = make_trainer(net, optax.sgd(0.05), solver=solver, T=50)
    opt = trainer.init(params)
    p, opt, first = trainer.step(params, opt, clamps)
    for _ in range(4):
        p, opt, metrics = trainer.step(p, opt, clamps)
    assert int(metrics.status) == 0 and metrics.energy_trace.shape == (51,)
    assert float(metrics.energy) < float(first.energy)  # learning lowers the settled energy


def test_a_museum_model_settles_with_it_to_what_a_fine_fixed_step_settle_reaches():
    model = GNCN(GNCNConfig(kind="gncn_t1", z_dims=(8, 8), x_dim=12, K=101, beta=0.05))
    params = model.init(jax.random.key(0))
    x = jnp.asarray((np.random.default_rng(0).random((3, 12)) > 0.5).astype(np.float32))
    # the museum's dynamics drift for long (its leak is 0.001): integrate both to the time t = 5
    solver = AdaptiveHeun(rtol=1e-3, atol=1e-3, t1=5.0, steady_state=False)
    adaptive = model.settle(params, x, steps=501, solver=solver)
    fine = model.settle(params, x, steps=501, solver=Heun(0.01))  # 500 Heun steps of 0.01: t = 5
    assert int(adaptive.status) == 0 and int(adaptive.n_steps) < 100  # far fewer steps
    for a, b in zip(jax.tree.leaves(adaptive.states), jax.tree.leaves(fine.states)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-3)


def test_configs_select_it_and_bad_values_get_one_clear_error():
    assert make_solver("adaptive_heun", 0.2, rtol=1e-4, atol=1e-5) == AdaptiveHeun(rtol=1e-4, atol=1e-5, dt0=0.2)
    cfg = parse_toml('[network]\ndims = [784, 16, 10]\n[inference]\noptimizer = "adaptive_heun"\nrtol = 1e-4\n')
    built = cfg.inference.build()
    assert isinstance(built, AdaptiveHeun) and built.rtol == 1e-4 and built.dt0 == cfg.inference.learning_rate
    assert build_network(cfg).names == ("x", "h1", "y")
    museum = parse_toml('[model]\nsolver = "adaptive_heun"\natol = 1e-4\n')
    assert (museum.model.solver, museum.model.atol) == ("adaptive_heun", 1e-4)
    with pytest.raises(ConfigError, match="settle_tol"):
        parse_toml('[model]\nsolver = "adaptive_heun"\nsettle_tol = 0.01\n')
    with pytest.raises(ValueError, match="rtol: expected a finite number > 0"):
        AdaptiveHeun(rtol=0)
    net, params, clamps = _linear_net()
    with pytest.raises(ValueError, match="tol: expected None with AdaptiveHeun"):
        settle_model(net, params, clamps, steps=5, solver=AdaptiveHeun(), tol=0.1)
