"""ngc-learn 3.2.3 implementations of the peer network, written as the ngc-museum PC models are.

Style as in ngc-museum's predictive-coding exhibits (``exhibits/pc_recon``): inside a
``Context``, ``RateCell`` latents (``relu``, Euler, ``tau_m``), ``GaussianErrorCell`` error units,
``HebbianSynapse`` generative weights (``sign_value=-1``, ``optim_type="sgd"``) and
``StaticSynapse`` feedback weights pinned to their transposes before each batch; compartments
wired with ``>>``; ``MethodProcess`` pipelines for reset, advance (feedback synapses, cells,
predictions, errors, in the museum's order) and evolve; the E-steps run either through the
process's ``scan`` over ``pack_rows`` (``ngc_scan``, the museum's default) or as a Python loop of
``advance_process.run`` calls (``ngc_step``, the museum's commented alternative).

Mapping to the benchmark network (common.py): RateCell integrates
``tau_m dz/dt = j * relu'(z) + j_td`` with ``j = e_{l-1} W_l^T`` (feedback synapse) and
``j_td = -e_l`` (the error cell's ``dtarget``), ``relu'(z) = 1[z >= 0]`` (ngc-learn's ``d_relu``),
so ``dt / tau_m`` = 1 / 10 is the Euler step 0.1. The museum order (drive from the previous step's
errors, then states, then predictions, then errors) makes the first of T advance steps a move by
zero from the reset state, so T = K + 1 advance steps make K Euler moves. ``HebbianSynapse``'s
update is ``pre^T post`` summed over the batch; ``eta = lr / B`` and ``w_bound = 0`` (no bounding)
give the benchmark's batch-mean SGD step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from common import Impl, Spec
from ngclearn import Context, MethodProcess
from ngclearn.components import GaussianErrorCell, HebbianSynapse, RateCell, StaticSynapse
from ngcsimlib.global_state import stateManager

_COUNT = [0]


class PCNetwork:
    """A generative PC circuit x <- z1 <- ... <- zL built from ngc-learn components."""

    def __init__(self, spec: Spec, key, batch_size: int):
        d, L = spec.dims, spec.L
        self.spec, self.L, self.T = spec, L, spec.K + 1
        self.dt, tau_m = 1.0, 1.0 / spec.dt
        keys = jax.random.split(key, 2 * L)
        _COUNT[0] += 1  # one Context name per instance
        with Context(f"pc_bench_{_COUNT[0]}") as self.circuit:
            self.z = [
                RateCell(
                    f"z{l}", n_units=d[l], tau_m=tau_m, act_fx="relu", prior=("gaussian", 0.0), batch_size=batch_size
                )
                for l in range(1, L + 1)
            ]
            self.e = [GaussianErrorCell(f"e{l}", n_units=d[l], batch_size=batch_size) for l in range(L)]
            self.W = [
                HebbianSynapse(
                    f"W{l}",
                    shape=(d[l], d[l - 1]),
                    eta=spec.lr / batch_size,
                    w_bound=0.0,
                    sign_value=-1.0,
                    optim_type="sgd",
                    batch_size=batch_size,
                    key=keys[l - 1],
                )
                for l in range(1, L + 1)
            ]
            self.E = [
                StaticSynapse(f"E{l}", shape=(d[l - 1], d[l]), batch_size=batch_size, key=keys[L + l - 1])
                for l in range(1, L + 1)
            ]
            for l in range(1, L + 1):
                z, W, E, e_below = self.z[l - 1], self.W[l - 1], self.E[l - 1], self.e[l - 1]
                z.zF >> W.inputs  # top-down prediction of layer l-1
                W.outputs >> e_below.mu
                if l >= 2:
                    self.z[l - 2].z >> e_below.target
                e_below.dmu >> E.inputs  # bottom-up error message
                E.outputs >> z.j
                if l < L:
                    self.e[l].dtarget >> z.j_td
                z.zF >> W.pre  # Hebbian factors
                e_below.dmu >> W.post

            self.reset_process = MethodProcess(name="reset_process")
            for c in (*self.z, *self.e, *self.W, *self.E):
                self.reset_process >> c.reset
            self.advance_process = MethodProcess(name="advance_process")
            for c in (*self.E, *reversed(self.z), *reversed(self.W), *reversed(self.e)):
                self.advance_process >> c.advance_state
            self.evolve_process = MethodProcess(name="evolve_process")
            for W in self.W:
                self.evolve_process >> W.evolve

    def clamp_input(self, x) -> None:
        self.e[0].target.set(x)

    def process(self, x, *, scan: bool) -> None:
        """One training step on batch ``x``: T E-steps from reset, then the Hebbian M-step."""
        for W, E in zip(self.W, self.E):  # pin feedback synapses to the transposes
            E.weights.set(jnp.transpose(W.weights.get()))
        self.reset_process.run()
        self.clamp_input(x)
        if scan:
            inputs = jnp.array(self.advance_process.pack_rows(self.T, t=lambda i: i, dt=self.dt))
            stateManager.state, _ = self.advance_process.scan(inputs)
        else:
            for i in range(self.T):
                self.advance_process.run(t=i * self.dt, dt=self.dt)
        self.evolve_process.run(t=self.T, dt=self.dt)


def build(name: str, spec: Spec, W0, x) -> Impl:
    scan = {"ngc_scan": True, "ngc_step": False}[name]
    net = PCNetwork(spec, jax.random.PRNGKey(spec.seed), x.shape[0])
    xj = jnp.asarray(x)

    def set_weights(W):
        for l, syn in enumerate(net.W, start=1):
            syn.weights.set(jnp.asarray(W[f"W{l}"]))

    def step():
        net.process(xj, scan=scan)
        jax.block_until_ready(net.W[0].weights.get())

    set_weights(W0)
    import ngclearn

    style = {"ngc_scan": "process.scan (museum default)", "ngc_step": "advance_process.run loop"}[name]
    return Impl(
        name=name,
        style=style,
        library=f"ngclearn {ngclearn.__version__}",
        step=step,
        set_weights=set_weights,
        weights=lambda: {f"W{l}": np.asarray(s.weights.get()) for l, s in enumerate(net.W, start=1)},
        states=lambda: [np.asarray(z.z.get()) for z in net.z],
        notes="RateCell + GaussianErrorCell + HebbianSynapse (+ StaticSynapse feedback), MethodProcess",
    )
