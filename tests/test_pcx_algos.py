"""The energies and algorithms of PCX's benchmark: the categorical (PC-CE) cell, nudged PC, incremental PC.

Oracles: closed forms and ``jax.grad`` for the cell; backprop's gradient (``jax.grad`` of the output
loss on the forward pass, float64) for nudging as ``beta -> 0``; a hand-written replay of the
interleaved state and weight steps (``jax.grad`` of the energy) for iPC.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from predcode import make_trainer
from predcode.cells import CategoricalErrorCell, GaussianErrorCell
from predcode.experiments.config import ConfigError, config_from_dict, load_config
from predcode.experiments.config.network import build_network
from predcode.learning.incremental import Incremental
from predcode.learning.nudging import Nudged
from predcode.learning.trainer import EnergyGradient
from predcode.models.network import NetworkError, PCNetwork


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(a)) for a in jax.tree.leaves(tree)])


def test_categorical_cell_energy_and_signals_against_closed_form_and_grad():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        mu = jnp.asarray(rng.normal(size=(4, 5)))
        target = jnp.asarray(np.eye(5)[[0, 3, 2, 4]])
        out = CategoricalErrorCell()(target, mu)
        logp = mu - np.log(np.sum(np.exp(mu), axis=1, keepdims=True))
        np.testing.assert_allclose(out.energy, -np.sum(target * logp, axis=1), rtol=1e-12)
        np.testing.assert_allclose(out.e, target - np.exp(logp), rtol=1e-12)
        total = lambda t, m, mask=None: jnp.sum(CategoricalErrorCell()(t, m, mask=mask).energy)
        # dmu and dtarget are minus the energy's gradients (the log-likelihood's).
        np.testing.assert_allclose(out.dmu, -jax.grad(total, argnums=1)(target, mu), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(out.dtarget, -jax.grad(total, argnums=0)(target, mu), rtol=1e-12)
        # a soft target and a mask (the masked classes leave the sum, not the softmax)
        soft = jax.nn.softmax(jnp.asarray(rng.normal(size=(4, 5))))
        mask = jnp.asarray(rng.integers(0, 2, size=(4, 5)).astype(float))
        masked = CategoricalErrorCell()(soft, mu, mask=mask)
        np.testing.assert_allclose(masked.energy, -np.sum(mask * soft * logp, axis=1), rtol=1e-12)
        np.testing.assert_allclose(masked.dmu, -jax.grad(total, argnums=1)(soft, mu, mask), rtol=1e-12, atol=1e-15)


def _pc_doc(**inference) -> dict:
    return {
        "network": {"dims": [784, 16, 10], "activation": "gelu", "output_cell": "categorical"},
        "inference": {"T": 3, **inference},
        "data": {"dataset": "mnist"},
    }


def test_categorical_output_from_config_scores_the_forward_logits_by_cross_entropy():
    cfg = config_from_dict(_pc_doc())
    net = build_network(cfg)
    assert isinstance(net.nodes[-1].cell, CategoricalErrorCell)
    params = net.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (3, 784))
    y = jax.nn.one_hot(jnp.array([1, 7, 3]), 10)
    states = {**net.forward(params, {"x": x}), "y": y}  # hidden errors are zero at the forward pass
    logits = net.forward(params, {"x": x})["y"]
    ce = -jnp.sum(y * jax.nn.log_softmax(logits), axis=1)
    energies = net.energies(params, states)
    np.testing.assert_allclose(energies["y"], ce, rtol=1e-5)
    np.testing.assert_allclose(energies["h1"], 8 * np.log(2 * np.pi), rtol=1e-5)  # a zero error's constant


def _toy(cell=None):
    net = PCNetwork.chain([3, 5, 4, 2], names=["x", "h1", "h2", "y"], activation="tanh", output_cell=cell)
    params = net.init(jax.random.key(3))
    x = jax.random.normal(jax.random.key(4), (6, 3))
    y = jax.random.normal(jax.random.key(5), (6, 2)) if cell is None else jax.nn.one_hot(jnp.arange(6) % 2, 2)
    return net, params, {"x": x, "y": y}


@pytest.mark.parametrize("cell", [None, CategoricalErrorCell()], ids=["squared_error", "cross_entropy"])
def test_nudged_update_tends_to_backprop_as_beta_shrinks(cell):
    with jax.enable_x64(True):
        net, params, clamps = _toy(cell)
        out = net.node("y")

        def loss(p):  # backprop's loss: the output cell's energy at the forward pass, batch mean
            mu = net.forward(p, {"x": clamps["x"]})["y"]
            return jnp.mean(out.cell_energy({}, clamps["y"], mu))

        bp = _flat(jax.grad(loss)(params))
        errors = {}
        for mode in ("positive", "negative", "centred"):
            rule = lambda b, mode=mode: Nudged(200, optax.sgd(0.3), beta=b, mode=mode)
            update = jax.jit(lambda b, rule=rule: rule(b).update(net, params, (), clamps))
            for beta in (1e-1, 1e-2, 1e-3):
                grads, _ = update(jnp.asarray(beta))
                errors[mode, beta] = np.linalg.norm(_flat(grads) - bp) / np.linalg.norm(bp)
        for mode in ("positive", "negative"):  # first order in beta
            assert errors[mode, 1e-1] > errors[mode, 1e-2] > errors[mode, 1e-3]
            assert errors[mode, 1e-3] < 5e-3
            assert errors[mode, 1e-2] / errors[mode, 1e-1] < 0.2
        # centred: second order, and below either one-sided update
        assert errors["centred", 1e-3] / errors["centred", 1e-2] < 0.02
        assert errors["centred", 1e-2] / errors["centred", 1e-1] < 0.02
        assert errors["centred", 1e-3] < 2e-5
        for beta in (1e-1, 1e-2):
            assert errors["centred", beta] < min(errors["positive", beta], errors["negative", beta])


def test_nudged_at_beta_one_is_plain_supervised_pc():
    net, params, clamps = _toy()
    plain, _ = EnergyGradient(5, optax.sgd(0.1)).update(net, params, (), clamps)
    nudged, _ = Nudged(5, optax.sgd(0.1), beta=1.0).update(net, params, (), clamps)
    np.testing.assert_allclose(_flat(nudged), _flat(plain), rtol=1e-6, atol=1e-7)


def test_nudged_rejects_bad_input():
    with pytest.raises(ValueError, match=r"beta: expected a number > 0"):
        Nudged(beta=0.0)
    with pytest.raises(ValueError, match=r"mode: expected one of"):
        Nudged(mode="sideways")
    net, params, clamps = _toy()
    with pytest.raises(NetworkError, match=r"clamp on node 'y': nudging expected the label clamped"):
        Nudged(3).update(net, params, (), {"x": clamps["x"]})
    learn = PCNetwork(
        [*net.nodes[:-1], dataclasses.replace(net.nodes[-1], cell=GaussianErrorCell("scalar"), sigma_init=1.0)]
    )
    with pytest.raises(NetworkError, match=r"learnable covariance"):
        Nudged(3).update(learn, learn.init(jax.random.key(0)), (), clamps)


def test_one_ipc_batch_equals_the_hand_computed_interleaved_steps():
    with jax.enable_x64(True):
        net, params, clamps = _toy()
        lr_x, lr_p, T = 0.3, 0.05, 2
        batch = clamps["x"].shape[0]
        energy = lambda p, z: net.energy(p, {**clamps, **z})
        fwd = net.forward(params, {"x": clamps["x"]})
        p, z = params, {"h1": fwd["h1"], "h2": fwd["h2"]}
        trace = []
        for _ in range(T):  # state step and weight step from the gradients at the same point
            trace.append(energy(p, z))
            gp, gz = jax.grad(energy, argnums=(0, 1))(p, z)
            z = jax.tree.map(lambda a, g: a - lr_x * g, z, gz)
            p = jax.tree.map(lambda a, g: a - lr_p * g / batch, p, gp)
        trace.append(energy(p, z))

        trainer = make_trainer(net, optax.sgd(lr_p), rule=Incremental(T, optax.sgd(lr_x)))
        new, _, metrics = trainer.step(params, trainer.init(params), clamps)
        np.testing.assert_allclose(_flat(new), _flat(p), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(metrics.energy_trace, np.array(trace), rtol=1e-12)
        np.testing.assert_allclose(metrics.energy, trace[-1] / batch, rtol=1e-12)
        # and it is not plain PC's one weight step after T state steps
        plain = make_trainer(net, optax.sgd(lr_p), T=T, solver=optax.sgd(lr_x))
        other, _, _ = plain.step(params, plain.init(params), clamps)
        assert np.max(np.abs(_flat(other) - _flat(p))) > 1e-4


def test_inference_config_selects_the_rule_and_rejects_bad_combinations():
    assert type(config_from_dict(_pc_doc()).inference.rule()) is EnergyGradient
    rule = config_from_dict(_pc_doc(nudge="centred", beta=0.1)).inference.rule()
    assert isinstance(rule, Nudged) and (rule.mode, rule.beta, rule.T) == ("centred", 0.1, 3)
    assert isinstance(config_from_dict(_pc_doc(algorithm="ipc")).inference.rule(), Incremental)
    with pytest.raises(ConfigError, match=r"inference\.nudge"):
        config_from_dict(_pc_doc(algorithm="ipc", nudge="positive"))
    with pytest.raises(ConfigError, match=r"inference\.algorithm"):
        config_from_dict(_pc_doc(algorithm="ep"))
    gen = {"network": {"task": "generative", "dims": [16, 784]}, "inference": {"nudge": "positive"}}
    with pytest.raises(ConfigError, match=r"inference\.nudge"):
        config_from_dict({**gen, "data": {"dataset": "mnist"}})


@pytest.mark.parametrize("name", ["se", "ce", "ipc"])
@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_pcx_benchmark_configs_have_pcx_architecture_and_epochs(name, dataset):
    cfg = load_config(f"configs/pc/pcx_mlp_{dataset}_{name}.toml")
    assert cfg.network.dims == (784, 128, 128, 128, 10)
    assert (cfg.train.epochs, cfg.train.batch_size) == (25, 128)
    assert cfg.network.output_cell == ("categorical" if name == "ce" else "gaussian")
    assert cfg.inference.algorithm == ("ipc" if name == "ipc" else "pc")


def test_warmup_cosine_schedule_is_pcx_s():
    from predcode.experiments.config.sections import OptimizerConfig

    sgd = OptimizerConfig(name="sgd", learning_rate=2.0, schedule="warmup_cosine").build(100)
    state, params, rates = sgd.init(jnp.zeros(())), jnp.zeros(()), []
    for _ in range(101):
        updates, state = sgd.update(jnp.ones(()), state, params)
        rates.append(-float(updates))
    # up from lr to 1.1 lr over the first 10 % of the steps, then a cosine decay to 0.1 lr
    k = np.arange(101)
    warm = 2.0 + 0.2 * k / 10
    decay = 0.2 + (2.2 - 0.2) * 0.5 * (1 + np.cos(np.pi * (k - 10) / 90))
    np.testing.assert_allclose(rates, np.where(k < 10, warm, decay), rtol=1e-5)
