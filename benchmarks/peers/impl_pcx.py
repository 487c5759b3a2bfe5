"""PCX 0.6.3 implementations of the peer network, written as PCX's own examples write a decoder.

Style as in PCX's decoder tutorial (``examples/5_decoder_pc.ipynb``) and its MCPC notebook
(``examples/7_mcpc.ipynb``): an ``pxc.EnergyModule`` with ``pxnn.Linear`` layers and one
``pxc.Vode`` per layer (Gaussian ``se_energy``, hidden vodes initialised to zero by a ruleset
transform, the top vode without energy, the data vode frozen), per-sample model calls batched with
``pxf.vmap`` (energy ``psum``-ed over ``"batch"``), ``pxf.value_and_grad`` over the unfrozen vodes
for inference with ``pxu.Optim(optax.sgd(dt))`` and over ``pxnn.LayerParam`` for learning with
``optax.sgd(lr)`` and ``scale_by=1/B``, the whole step under ``pxf.jit``.

* ``pcx_loop``: the decoder tutorial's Python ``for`` loop over the T inference steps (unrolled
  into the jitted step);
* ``pcx_scan``: the MCPC notebook's ``pxf.scan`` over the inference steps.

The one deviation from the tutorials is the activation: ``relu`` with the legacy derivative
``1[z >= 0]`` (a ``jax.custom_jvp``), without which zero-initialised layers never move; PCX
obtains the state dynamics from ``jax.grad`` of the energy, so the convention has to live in the
activation's derivative.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pcx as px
import pcx.functional as pxf
import pcx.nn as pxnn
import pcx.predictive_coding as pxc
import pcx.utils as pxu
from common import Impl, Spec


@jax.custom_jvp
def relu(x):
    return jnp.maximum(x, 0.0)


@relu.defjvp
def _relu_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return relu(x), t * (x >= 0).astype(x.dtype)


class Decoder(pxc.EnergyModule):
    """Generative PC network: top vode (free, no prior) -> Linear -> ... -> data vode (frozen)."""

    def __init__(self, dims: tuple[int, ...], act_fn) -> None:
        super().__init__()
        self.act_fn = px.static(act_fn)
        self.top_dim = px.static(dims[-1])
        # layers[i] maps the state of layer L-i to the prediction of layer L-i-1
        self.layers = [pxnn.Linear(dims[l], dims[l - 1], bias=False) for l in range(len(dims) - 1, 0, -1)]
        zero = {"to_zero": lambda n, k, v, rkg: jnp.zeros_like(v)}
        self.vodes = (
            [pxc.Vode(energy_fn=pxc.zero_energy)]
            + [pxc.Vode(ruleset={pxc.STATUS.INIT: ("h, u <- u:to_zero",)}, tforms=zero) for _ in range(len(dims) - 2)]
            + [pxc.Vode()]
        )
        self.vodes[-1].h.frozen = True

    def __call__(self, y: jax.Array | None):
        x = self.vodes[0](jnp.zeros((self.top_dim.get(),)))
        for i, layer in enumerate(self.layers):
            x = self.vodes[i + 1](layer(self.act_fn(x)))
        if y is not None:
            self.vodes[-1].set("h", y)
        return self.vodes[-1].get("u")


@pxf.vmap(pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0)), in_axes=0, out_axes=0)
def forward(y, *, model: Decoder):
    return model(y)


@pxf.vmap(pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0)), out_axes=(None, 0), axis_name="batch")
def energy(*, model: Decoder):
    y_ = model(None)
    return jax.lax.psum(model.energy(), "batch"), y_


@pxf.jit(static_argnums=0)
def train_on_batch_loop(T: int, x: jax.Array, *, model: Decoder, optim_w: pxu.Optim, optim_h: pxu.Optim):
    model.train()
    inference_step = pxf.value_and_grad(pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True]), has_aux=True)(
        energy
    )
    learning_step = pxf.value_and_grad(pxu.M(pxnn.LayerParam).to([False, True]), has_aux=True)(energy)

    with pxu.step(model, (pxc.STATUS.INIT, None), clear_params=pxc.VodeParam.Cache):
        forward(x, model=model)
    optim_h.init(pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))

    for _ in range(T):
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            _, g = inference_step(model=model)
        optim_h.step(model, g["model"])
    optim_h.clear()

    with pxu.step(model, clear_params=pxc.VodeParam.Cache):
        _, g = learning_step(model=model)
    optim_w.step(model, g["model"], scale_by=1.0 / x.shape[0])


@pxf.jit(static_argnums=0)
def train_on_batch_scan(T: int, x: jax.Array, *, model: Decoder, optim_w: pxu.Optim, optim_h: pxu.Optim):
    def h_step(i, x, *, model, optim_h):
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            _, g = pxf.value_and_grad(pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True]), has_aux=True)(energy)(
                model=model
            )
        optim_h.step(model, g["model"])
        return x, None

    model.train()
    with pxu.step(model, (pxc.STATUS.INIT, None), clear_params=pxc.VodeParam.Cache):
        forward(x, model=model)
    optim_h.init(pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))

    pxf.scan(h_step, xs=jnp.arange(T))(x, model=model, optim_h=optim_h)
    optim_h.clear()

    with pxu.step(model, clear_params=pxc.VodeParam.Cache):
        _, g = pxf.value_and_grad(pxu.M(pxnn.LayerParam).to([False, True]), has_aux=True)(energy)(model=model)
    optim_w.step(model, g["model"], scale_by=1.0 / x.shape[0])


def build(name: str, spec: Spec, W0, x) -> Impl:
    fn = {"pcx_loop": train_on_batch_loop, "pcx_scan": train_on_batch_scan}[name]
    px.RKG.seed(spec.seed)
    L = spec.L
    model = Decoder(spec.dims, relu)
    xj = jnp.asarray(x)
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(jnp.zeros_like(xj), model=model)
    optim_h = pxu.Optim(lambda: optax.sgd(spec.dt))
    optim_w = pxu.Optim(lambda: optax.sgd(spec.lr), pxu.M(pxnn.LayerParam)(model))

    def set_weights(W):
        # layers[i] predicts layer L-i-1 from layer L-i; equinox stores (out, in) = W^T
        for i, layer in enumerate(model.layers):
            layer.nn.weight.set(jnp.asarray(W[f"W{L - i}"].T))

    def weights():
        return {f"W{L - i}": np.asarray(layer.nn.weight.get()).T for i, layer in enumerate(model.layers)}

    def states():
        # vodes[0] is z_L (top) ... vodes[L-1] is z_1; return z_1..z_L
        return [np.asarray(model.vodes[L - l].get("h")) for l in range(1, L + 1)]

    def step():
        fn(spec.K, xj, model=model, optim_w=optim_w, optim_h=optim_h)
        jax.block_until_ready(model.layers[-1].nn.weight.get())

    set_weights(W0)
    style = {"pcx_loop": "Python loop (decoder tutorial)", "pcx_scan": "pxf.scan (MCPC notebook)"}[name]
    return Impl(
        name=name,
        style=style,
        library=f"pcx {getattr(px, '__version__', '0.6.3')}",
        step=step,
        set_weights=set_weights,
        weights=weights,
        states=states,
        notes="EnergyModule + Vode + pxnn.Linear, pxf.vmap/value_and_grad/jit, optax.sgd",
    )
