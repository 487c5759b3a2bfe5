"""predcode and plain-JAX implementations of the peer network (see common.py for the network).

* ``predcode``: predcode's core, as a user of the library writes a custom network: the
  ``GaussianErrorCell`` error units, the ``relu`` activation with its legacy derivative, the
  ``lax.scan`` settle of ``predcode.dynamics`` (Euler solver) and the ``hebbian`` rule, in one
  ``jax.jit``-ed step. It runs in any venv where predcode is installed (``pip install -e . --no-deps``),
  so it is timed under each peer's JAX release too.
* ``plain_jax``: the same step hand-written with ``jax.numpy`` and one ``lax.scan`` carrying only
  the states and errors: the floor an implementation on this JAX can reach.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from common import Impl, Spec


def _wrap(name: str, style: str, library: str, step_fn, W0, x, notes: str = "") -> Impl:
    jitted = jax.jit(step_fn)
    xj = jnp.asarray(x)
    state = {"W": {k: jnp.asarray(v) for k, v in W0.items()}, "z": None}

    def step():
        state["W"], state["z"] = jitted(state["W"], xj)
        jax.block_until_ready(state["W"])

    def set_weights(W):
        state["W"] = {k: jnp.asarray(v) for k, v in W.items()}

    return Impl(
        name=name,
        style=style,
        library=library,
        step=step,
        set_weights=set_weights,
        weights=lambda: {k: np.asarray(v) for k, v in state["W"].items()},
        states=lambda: [np.asarray(z) for z in state["z"]],
        notes=notes,
    )


def build_predcode(spec: Spec, W0, x) -> Impl:
    import predcode
    from predcode.activations import get_activation
    from predcode.cells import GaussianErrorCell
    from predcode.dynamics import Euler, settle
    from predcode.learning.hebbian import hebbian

    L, relu, cell = spec.L, get_activation("relu"), GaussianErrorCell()

    def train_step(W, x):
        def predict(states):
            phis = [relu.fn(z) for z in states]
            preds, errs = [], []
            for l in range(1, L + 1):
                mu = phis[l - 1] @ W[f"W{l}"]
                out = cell(x if l == 1 else states[l - 2], mu)
                preds.append(mu)
                errs.append(out.e)
            # Unit variance: the error message dmu equals e, so the signals *are* the errors.
            return tuple(preds), tuple(errs), tuple(errs)

        def drive(states, sigs):
            dz = []
            for l in range(1, L + 1):
                d = (sigs[l - 1] @ W[f"W{l}"].T) * relu.deriv(states[l - 1])
                dz.append(d - sigs[l] if l < L else d)
            return tuple(dz)

        def energy(states, errs):
            return 0.5 * sum(jnp.sum(e * e) for e in errs) / x.shape[0]

        z0 = tuple(jnp.zeros((x.shape[0], d), x.dtype) for d in spec.dims[1:])
        res = settle(predict, drive, energy, z0, steps=spec.K + 1, solver=Euler(spec.dt))
        new_W = {
            f"W{l}": W[f"W{l}"] + spec.lr * hebbian(relu.fn(res.states[l - 1]), res.errors[l - 1])
            for l in range(1, L + 1)
        }
        return new_W, res.states

    return _wrap(
        "predcode",
        "settle (lax.scan)",
        f"predcode {predcode.__version__}",
        train_step,
        W0,
        x,
        notes="cells.GaussianErrorCell + dynamics.settle (Euler, K+1 steps = K moves) + hebbian",
    )


def build_predcode_gram(spec: Spec, W0, x) -> Impl:
    import predcode
    from predcode.activations import get_activation
    from predcode.dynamics import Euler, LinearClamped, settle
    from predcode.learning.hebbian import hebbian

    L, relu = spec.L, get_activation("relu")

    def train_step(W, x):
        # The clamped image is predicted linearly with unit variance: its messages to z1 take the
        # Gram form x W1^T - relu(z1) (W1 W1^T), one 360 x 360 product instead of two 360 x 784.
        clamp = LinearClamped.build(x, W["W1"])

        def predict(states):
            phis = [relu.fn(z) for z in states]
            msg = clamp.message(phis[0])
            preds = tuple(phis[l - 1] @ W[f"W{l}"] for l in range(2, L + 1))
            errs = tuple(states[l - 2] - mu for l, mu in zip(range(2, L + 1), preds))
            return preds, (clamp.sq_error(phis[0], msg), *errs), (msg, *errs)

        def drive(states, sigs):
            dz = []
            for l in range(1, L + 1):
                m = sigs[0] if l == 1 else sigs[l - 1] @ W[f"W{l}"].T
                d = m * relu.deriv(states[l - 1])
                dz.append(d - sigs[l] if l < L else d)
            return tuple(dz)

        def energy(states, errs):
            return 0.5 * (jnp.sum(errs[0]) + sum(jnp.sum(e * e) for e in errs[1:])) / x.shape[0]

        z0 = tuple(jnp.zeros((x.shape[0], d), x.dtype) for d in spec.dims[1:])
        res = settle(predict, drive, energy, z0, steps=spec.K + 1, solver=Euler(spec.dt))
        phis = [relu.fn(z) for z in res.states]
        errors = (clamp.error(phis[0]), *res.errors[1:])
        new_W = {f"W{l}": W[f"W{l}"] + spec.lr * hebbian(phis[l - 1], errors[l - 1]) for l in range(1, L + 1)}
        return new_W, res.states

    return _wrap(
        "predcode_gram",
        "settle (lax.scan), Gram-form input messages",
        f"predcode {predcode.__version__}",
        train_step,
        W0,
        x,
        notes="dynamics.LinearClamped (x W1^T - relu(z1) W1 W1^T) + dynamics.settle (Euler) + hebbian",
    )


def build_plain(spec: Spec, W0, x) -> Impl:
    L = spec.L
    relu = jax.nn.relu

    def errors(W, x, z):
        return tuple((x if l == 1 else z[l - 2]) - relu(z[l - 1]) @ W[f"W{l}"] for l in range(1, L + 1))

    def train_step(W, x):
        def body(carry, _):
            z, e = carry
            z = tuple(
                z[l - 1] + spec.dt * ((e[l - 1] @ W[f"W{l}"].T) * (z[l - 1] >= 0) - (e[l] if l < L else 0.0))
                for l in range(1, L + 1)
            )
            return (z, errors(W, x, z)), None

        z0 = tuple(jnp.zeros((x.shape[0], d), x.dtype) for d in spec.dims[1:])
        (z, e), _ = jax.lax.scan(body, (z0, errors(W, x, z0)), None, length=spec.K)
        new_W = {f"W{l}": W[f"W{l}"] + (spec.lr / x.shape[0]) * (relu(z[l - 1]).T @ e[l - 1]) for l in range(1, L + 1)}
        return new_W, z

    return _wrap(
        "plain_jax",
        "lax.scan",
        f"jax {jax.__version__}",
        train_step,
        W0,
        x,
        notes="hand-written jax.numpy, scan carries (z, e) only",
    )


BUILDERS = {"predcode": build_predcode, "predcode_gram": build_predcode_gram, "plain_jax": build_plain}


def build(name: str, spec: Spec, W0, x) -> Impl:
    return BUILDERS[name](spec, W0, x)
