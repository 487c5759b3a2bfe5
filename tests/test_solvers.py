"""Settling solvers and the convergence tolerance, against closed forms, optax and a NumPy loop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

from predcode.dynamics import Euler, Heun, Momentum, Nesterov, make_solver, settle
from predcode.experiments.config import ConfigError, dump_toml, parse_toml
from predcode.models.gncn import GNCN, GNCNConfig

RNG = np.random.default_rng(0)
Q = (lambda a: a @ a.T / 4 + 0.2 * np.eye(4))(RNG.normal(size=(4, 4)))  # SPD, condition ~ 20
B = RNG.normal(size=(1, 4))


def _linear_settle(solver, steps, tol=None, z0=None):
    """Gradient flow of E(z) = z Q z / 2 - b z (rows are samples): dz = b - z Q, energy E."""
    q, b = jnp.asarray(Q), jnp.asarray(B)
    z0 = jnp.zeros((1, 4)) if z0 is None else z0
    return settle(
        lambda z: ((), (), ()),
        lambda z, _: (b - z[0] @ q,),
        lambda z, _: jnp.sum(0.5 * (z[0] @ q) * z[0] - b * z[0]),
        (z0,),
        steps=steps,
        solver=solver,
        tol=tol,
    )


def test_heun_is_second_order_on_a_linear_ode(x64):
    t_end = 2.0
    exact = np.linalg.solve(Q, B.T).T @ (np.eye(4) - scipy.linalg.expm(-Q * t_end))  # z(0) = 0
    errors = []
    for n in (40, 80, 160):
        z = np.asarray(_linear_settle(Heun(t_end / n), n + 1).states[0])
        errors.append(np.abs(z - exact).max())
    assert 3.6 < errors[0] / errors[1] < 4.4 and 3.6 < errors[1] / errors[2] < 4.4, errors
    euler = np.abs(np.asarray(_linear_settle(Euler(t_end / 160), 161).states[0]) - exact).max()
    assert errors[2] < euler / 20  # same step, far more accurate than Euler


@pytest.mark.parametrize("cls, nesterov", [(Momentum, False), (Nesterov, True)])
def test_momentum_solvers_take_the_steps_of_optax_sgd_with_momentum(cls, nesterov, x64):
    dt, mu, steps = 0.3, 0.6, 12
    got = _linear_settle(cls(dt, mu), steps).states[0]
    opt = optax.sgd(dt, momentum=mu, nesterov=nesterov)
    z = jnp.zeros((1, 4))
    state = opt.init(z)
    for _ in range(steps - 1):  # the first step of a settle only predicts
        grad = z @ jnp.asarray(Q) - jnp.asarray(B)
        upd, state = opt.update(grad, state)
        z = optax.apply_updates(z, upd)
    np.testing.assert_allclose(got, z, rtol=1e-12, atol=1e-12)


def test_momentum_reaches_the_closed_form_minimum_in_fewer_steps_than_euler(x64):
    u = np.linalg.qr(RNG.normal(size=(4, 4)))[0]
    q = u @ np.diag([0.02, 0.3, 1.0, 2.0]) @ u.T  # condition 100: Euler contracts by 0.99 a step
    z_star = np.linalg.solve(q, B.T).T
    dt = 0.5

    def run(solver):
        return settle(
            lambda z: ((), (), ()),
            lambda z, _: (jnp.asarray(B) - z[0] @ jnp.asarray(q),),
            lambda z, _: jnp.float64(0),
            (jnp.zeros((1, 4)),),
            steps=5000,
            solver=solver,
            tol=1e-10,
        )

    euler, heavy, nesterov = run(Euler(dt)), run(Momentum(dt, 0.9)), run(Nesterov(dt, 0.9))
    for result in (euler, heavy, nesterov):
        np.testing.assert_allclose(result.states[0], z_star, atol=1e-6)
    for fast in (heavy, nesterov):  # rate sqrt(0.9) = 0.95 against 0.99
        assert int(fast.n_steps) < 0.3 * int(euler.n_steps) < 5000, (int(fast.n_steps), int(euler.n_steps))


def test_tolerance_stops_at_the_first_small_step_and_keeps_those_states(x64):
    dt, tol = 0.2, 1e-3
    result = _linear_settle(Euler(dt), 200, tol=tol)
    z, n = np.zeros((1, 4)), 1  # NumPy: the same Euler steps and stopping rule
    while n < 200:
        new = z + dt * (B - z @ Q)
        n += 1
        if np.linalg.norm(new - z) <= tol * np.linalg.norm(new):
            z = new
            break
        z = new
    assert int(result.n_steps) == n < 200
    np.testing.assert_allclose(result.states[0], z, rtol=1e-12)
    fixed = _linear_settle(Euler(dt), n)
    np.testing.assert_allclose(result.energy[:n], fixed.energy, rtol=1e-12)
    np.testing.assert_allclose(result.energy[n:], fixed.energy[-1], rtol=1e-12)  # trace filled after the stop
    assert int(result.status) == 0


def test_tolerance_settle_runs_under_vmap_each_batch_stopping_on_its_own(x64):
    starts = jnp.stack([jnp.zeros((1, 4)), jnp.asarray(np.linalg.solve(Q, B.T).T)])  # the second is settled
    n = jax.vmap(lambda z0: _linear_settle(Euler(0.2), 200, tol=1e-6, z0=z0).n_steps)(starts)
    assert int(n[1]) == 2 and int(n[0]) > 20


def test_gncn_takes_its_solver_and_tolerance_from_the_config():
    small = dict(kind="gncn_pdh", x_dim=16, z_dims=(12, 12, 18), K=12)
    x = jnp.asarray((np.random.default_rng(1).random((5, 16)) < 0.4).astype(np.float32))
    museum = GNCN(GNCNConfig(**small))
    params = museum.init(jax.random.key(0))
    nest = GNCN(GNCNConfig(**small, solver="nesterov", momentum=0.3)).settle(params, x)
    by_hand = settle(
        lambda s: museum._predict(params, x, None, s),
        lambda s, g: museum._drive(params, s, g),
        lambda s, e: jnp.float32(0.0),
        tuple(jnp.zeros((5, d)) for d in small["z_dims"]),
        steps=12,
        solver=Nesterov(0.1, 0.3),
    )
    for a, b in zip(nest.states, by_hand.states):
        np.testing.assert_array_equal(a, b)
    assert int(GNCN(GNCNConfig(**small, settle_tol=0.2)).settle(params, x).n_steps) < 12
    assert int(museum.settle(params, x).n_steps) == 12


def test_solver_choices_are_validated_and_round_trip_through_toml():
    with pytest.raises(ValueError, match="solver: expected one of"):
        GNCNConfig(solver="rk4")
    with pytest.raises(ValueError, match=r"momentum: expected a number in \[0, 1\)"):
        GNCNConfig(momentum=1.0)
    with pytest.raises(ValueError, match="dt: expected a positive step size"):
        make_solver("heun", 0.0)
    with pytest.raises(ConfigError, match="did you mean 'heun'"):
        parse_toml('[model]\nsolver = "huen"\n')
    cfg = parse_toml('[model]\nsolver = "momentum"\nmomentum = 0.7\nK = 20\nsettle_tol = 0.01\n')
    assert (cfg.model.solver, cfg.model.momentum, cfg.model.settle_tol) == ("momentum", 0.7, 0.01)
    assert parse_toml(dump_toml(cfg)) == cfg
    default = parse_toml("")
    assert (default.model.solver, default.model.settle_tol) == ("euler", None)
    assert 'settle_tol = "none"' in dump_toml(default)
