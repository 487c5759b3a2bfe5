"""Online learning, rule checkpoints and the MNIST comparison's machinery (on small synthetic data)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from predcode.experiments.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from predcode.experiments.credit import (
    load_rule_checkpoint,
    product_signal,
    run_online,
    save_rule_checkpoint,
    train_rule,
    write_report,
)
from predcode.learning.rules import BackProp, DirectFeedbackAlignment, FeedbackAlignment, hidden_error_angles
from predcode.learning.streaming import make_rule_trainer, online
from predcode.models.mlp import MLP


def test_product_signal_is_seed_004s_input_and_target():
    t, xs, ys = product_signal(seconds=2.0, dt=1e-3)
    assert xs.shape == (2000, 2) and ys.shape == (2000, 1)
    np.testing.assert_allclose(xs[250], [np.sin(np.pi / 4), np.sin(2 * np.pi * 0.7 * 0.25 / 2)], rtol=1e-6)
    np.testing.assert_allclose(ys[:, 0], xs[:, 0] * xs[:, 1], rtol=1e-6)


def test_online_is_one_update_per_sample_in_order():
    model = MLP((2, 12, 1), activation="relu", loss="squared_error")
    params = model.init(jax.random.key(0), bias=0.2)
    _, xs, ys = product_signal(seconds=0.02)
    rule = FeedbackAlignment(key=4)
    res = online(model, rule, optax.sgd(0.05), params, xs, ys)
    # Oracle: the batch training step applied to one sample at a time, in a Python loop.
    trainer = make_rule_trainer(model, rule, optax.sgd(0.05))
    p, (rs, os) = params, trainer.init(params)
    outputs = []
    for x, y in zip(xs, ys):
        outputs.append(model.apply(p, x[None])[0])
        p, rs, os, _ = trainer.step(p, rs, os, x[None], y[None])
    np.testing.assert_allclose(res.outputs, np.stack(outputs), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(res.params), jax.tree.leaves(p)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_online_product_demo_learns_with_backprop_and_feedback_alignment():
    # The demo as shipped (60 s at 1 ms, seeded): 120,000 single-sample updates take a few seconds.
    result = run_online(seconds=60.0, seed=0)
    assert abs(result["variance"] - np.var(result["target"])) < 1e-6
    for name in ("backprop", "fa"):
        r = result["runs"][name]
        assert r["relative_mse"] < 0.10, (name, r["relative_mse"])
        assert r["frozen_relative_mse"] < 0.10, (name, r["frozen_relative_mse"])  # learned, not tracked


def test_online_rejects_mismatched_streams():
    model = MLP((2, 5, 1), loss="squared_error")
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"xs: expected shape \(T, 2\), got \(10, 3\)"):
        online(model, BackProp(), optax.sgd(0.1), params, np.zeros((10, 3)), np.zeros((10, 1)))
    with pytest.raises(ValueError, match="ys: expected 10 targets"):
        online(model, BackProp(), optax.sgd(0.1), params, np.zeros((10, 2)), np.zeros((9, 1)))


def test_hidden_error_angles_are_zero_for_backprop_and_fa_with_transposed_weights(x64):
    model = MLP((5, 9, 7, 3), activation="tanh")
    params = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.key(1), bias=0.1))
    x = jax.random.normal(jax.random.key(2), (6, 5))
    y = jnp.arange(6) % 3
    fa = FeedbackAlignment(feedback=[W.T for W, _ in params[1:]])
    np.testing.assert_allclose(hidden_error_angles(model, fa, params, fa.init(model, params), x, y), [0, 0], atol=1e-5)
    rand = FeedbackAlignment(key=3)
    angles = hidden_error_angles(model, rand, params, rand.init(model, params), x, y)
    assert np.all((angles > 1) & (angles < 180))


def _synthetic(n=600, d=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d)) * 2
    y = rng.integers(0, classes, n).astype(np.int32)
    x = (centres[y] + rng.normal(size=(n, d))).astype(np.float32)
    return x[:400], y[:400], x[400:500], y[400:500], x[500:], y[500:]


def test_feedback_matrices_survive_a_checkpoint_round_trip(tmp_path):
    data = _synthetic()
    res = train_rule(
        "dfa",
        data,
        sizes=(20, 16, 16, 4),
        epochs=2,
        batch_size=50,
        seed=3,
        angle_batch=100,
        checkpoint=tmp_path / "dfa",
        log=lambda s: None,
    )
    model, rule, params, state, meta = load_rule_checkpoint(tmp_path / "dfa")
    assert isinstance(rule, DirectFeedbackAlignment) and model.sizes == (20, 16, 16, 4)
    fresh = DirectFeedbackAlignment(key=jax.random.key(3 + 2000)).init(model, params)
    for a, b in zip(state.B, fresh.B):  # the matrices the run drew, kept fixed through training
        np.testing.assert_array_equal(a, b)
    assert meta["test_accuracy"] == res["test_accuracy"]
    assert model.accuracy(params, data[4], data[5]) == pytest.approx(res["test_accuracy"])


def test_checkpoint_with_a_wrong_shaped_feedback_matrix_is_refused(tmp_path):
    model = MLP((6, 8, 7, 4))
    params = model.init(jax.random.key(0))
    fa = FeedbackAlignment(key=1)
    save_rule_checkpoint(tmp_path / "fa", model, fa, params, fa.init(model, params))
    arrays, meta = load_checkpoint(tmp_path / "fa")
    arrays["rule_state/B/1"] = arrays["rule_state/B/1"].T  # B3
    save_checkpoint(tmp_path / "bad", arrays, meta)
    with pytest.raises(
        CheckpointError,
        match=r"feedback matrices: FeedbackAlignment feedback matrix B3 "
        r"expected shape \(7, 4\) for sizes \(6, 8, 7, 4\), got \(4, 7\)",
    ):
        load_rule_checkpoint(tmp_path / "bad")
    del arrays["rule_state/B/0"]  # B2
    save_checkpoint(tmp_path / "missing", arrays, meta)
    with pytest.raises(CheckpointError, match=r"missing \['B2'\]"):
        load_rule_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="holds a 'fa' run, but rule 'backprop' was given"):
        load_rule_checkpoint(tmp_path / "fa", rule=BackProp())


@pytest.mark.parametrize("name", ["backprop", "fa", "dfa", "pc"])
def test_every_rule_trains_the_comparison_mlp_and_records_angles(tmp_path, name):
    data = _synthetic()
    res = train_rule(
        name,
        data,
        sizes=(20, 16, 16, 4),
        epochs=8,
        batch_size=50,
        learning_rate=1e-2,
        angle_batch=100,
        pc_steps=5,
        log=lambda s: None,
    )
    assert res["test_accuracy"] > 0.9  # well-separated clusters
    assert len(res["epochs"]) == 8 and res["seconds_per_epoch"] > 0
    first, last = res["angles"][0], res["angles"][-1]
    assert first["step"] == 0 and last["epoch"] == 8
    assert len(last["degrees"]) == 3 and len(last["error_degrees"]) == 2
    if name == "backprop":
        assert max(last["degrees"]) < 0.1 and max(last["error_degrees"]) < 0.1  # float32 arccos near 1
    else:
        assert max(last["degrees"][:-1]) > 0.1  # a different rule than backprop
    (tmp_path / f"{name}.json").write_text(json.dumps(res))


def test_report_joins_the_rules_into_a_table(tmp_path):
    data = _synthetic()
    for name in ("backprop", "fa"):
        res = train_rule(
            name, data, sizes=(20, 16, 16, 4), epochs=1, batch_size=50, angle_batch=100, log=lambda s: None
        )
        (tmp_path / f"{name}.json").write_text(json.dumps(res))
    runs = write_report(tmp_path, tmp_path / "r.md", tmp_path / "r.json")
    text = (tmp_path / "r.md").read_text()
    assert set(runs) == {"backprop", "fa"}
    assert f"| FeedbackAlignment | {100 * runs['fa']['test_accuracy']:.2f}% | >= 97.0% |" in text
    assert json.loads((tmp_path / "r.json").read_text())["runs"]["fa"]["rule"] == "fa"
    assert "not recorded" in text  # no provenance in hand-made result files
    with pytest.raises(FileNotFoundError, match="no per-rule results"):
        write_report(tmp_path / "empty", tmp_path / "x.md", tmp_path / "x.json")


def test_cli_credit_writes_the_online_demo_and_explains_bad_options(tmp_path):
    from typer.testing import CliRunner

    from predcode.cli import app

    out = tmp_path / "online.png"
    result = CliRunner().invoke(app, ["credit", "online", "--seconds", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert set(summary["runs"]) == {"backprop", "fa"} and summary["settings"]["seconds"] == 1.0
    bad = CliRunner().invoke(app, ["credit", "mnist", "--rules", "sgd"])
    assert bad.exit_code == 2 and "invalid choice: 'sgd'" in bad.output


def test_readme_credit_assignment_example_runs(capsys):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "FeedbackAlignment(key" in b]
    assert len(blocks) == 1, "the README should carry one credit-assignment example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    for name in ("backprop", "fa"):
        share = float(re.search(rf"{name}: last-10-s MSE ([0-9.]+)%", printed).group(1))
        assert share < 10.0, printed
    assert np.isfinite(float(namespace["loss"]))
