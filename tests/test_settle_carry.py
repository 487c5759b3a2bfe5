"""settle carries an array that predict returns in two places (errors that are also signals) once.

Checked against a float64 NumPy Euler loop, in the compiled loop body (no per-step copy), and with a
predict whose sharing changes after the first call (settle must fall back, not lose an output).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np

from predcode.dynamics import Euler, settle

B, N, M, STEPS, DT = 8, 5, 3, 12, 0.1


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((B, N)), 0.4 * rng.standard_normal((M, N))


def _numpy_reference(x, W):
    """Euler on z (B, M): e = x - z W, dz = e W^T - 0.1 z; returns final z, e and the energy trace."""
    z = np.zeros((B, M))
    e = x - z @ W
    trace = [0.5 * np.sum(e * e) / B]
    for _ in range(STEPS - 1):
        z = z + DT * (e @ W.T - 0.1 * z)
        e = x - z @ W
        trace.append(0.5 * np.sum(e * e) / B)
    return z, e, np.array(trace)


def _settle(x, W, alias="always"):
    calls = {"n": 0}

    def predict(states):
        (z,) = states
        mu = z @ W
        e = x - mu
        calls["n"] += 1
        if alias == "always" or (alias == "first" and calls["n"] == 1):
            sig = e  # the same array: carried once
        else:
            sig = e * 1.0  # equal values, different array
        return (mu,), (e,), (sig,)

    def drive(states, sigs):
        (z,) = states
        return (sigs[0] @ W.T - 0.1 * z,)

    def energy(states, errs):
        return 0.5 * jnp.sum(errs[0] ** 2) / x.shape[0]

    return settle(predict, drive, energy, (jnp.zeros((x.shape[0], M), x.dtype),), steps=STEPS, solver=Euler(DT))


def test_shared_errors_and_signals_match_numpy():
    x, W = _problem()
    z_ref, e_ref, trace_ref = _numpy_reference(x, W)
    for alias in ("always", "never", "first"):
        res = jax.jit(lambda x, W, alias=alias: _settle(x, W, alias))(
            jnp.asarray(x, jnp.float32), jnp.asarray(W, jnp.float32)
        )
        np.testing.assert_allclose(res.states[0], z_ref, rtol=1e-5, atol=1e-5, err_msg=alias)
        np.testing.assert_allclose(res.errors[0], e_ref, rtol=1e-5, atol=1e-5, err_msg=alias)
        np.testing.assert_allclose(res.signals[0], e_ref, rtol=1e-5, atol=1e-5, err_msg=alias)
        np.testing.assert_allclose(res.energy, trace_ref, rtol=1e-5, err_msg=alias)


def test_shared_array_is_one_loop_variable_without_copies():
    x, W = (jnp.asarray(a, jnp.float32) for a in _problem())
    hlo = {a: jax.jit(lambda x, W, a=a: _settle(x, W, a)).lower(x, W).compile().as_text() for a in ("always", "never")}

    def while_arity(text):
        shape = re.search(r"= \(([^)]*)\) while\(", text).group(1)
        return shape.count(f"f32[{B},{N}]")

    # (B, N) loop variables: mu, e and the loop-invariant x, plus sig when it is a separate array.
    assert while_arity(hlo["always"]) == 3
    assert while_arity(hlo["never"]) == 4
