"""The one checkpoint scheme (format version 2): pytrees by key path, loaded into a template, and the
version-1 files of every family (``tests/fixtures/checkpoints_v1``, written at commit e2a4e43 by
``tests/fixtures/make_checkpoints_v1.py``) loading to the same arrays and resuming bit-exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from predcode.experiments.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointMismatch,
    load_checkpoint,
    load_tree,
    save_checkpoint,
    tree_arrays,
)
from predcode.learning.rules import FeedbackState

V1 = Path(__file__).parent / "fixtures" / "checkpoints_v1"

MUSEUM_TOML = (
    '[model]\nkind = "gncn_pdh"\nx_dim = 16\nz_dims = [4, 4, 4]\nK = 5\nn_group = 2\nn_top_group = 2\n'
    '[data]\ntrain_file = "train.npy"\nval_file = "val.npy"\n'
    "[train]\nbatch_size = 16\neval_batch_size = 16\nepochs = {epochs}\nseed = 3\n"
)
PC_TOML = (
    '[network]\ntask = "supervised"\ndims = [784, 2, 10]\nactivation = "tanh"\noutput_activation = "identity"\n'
    '[inference]\nT = 2\nlearning_rate = 0.1\n[optimizer]\nname = "adam"\nlearning_rate = 0.001\n'
    "[data]\nn_train = 64\nn_val = 32\n[train]\nbatch_size = 32\neval_batch_size = 32\nepochs = {epochs}\nseed = 3\n"
)


def _tree():
    params = {"W1": jnp.arange(6.0).reshape(2, 3), "edges": {"y": {"x": {"w": jnp.ones((3, 4)), "b": jnp.zeros(4)}}}}
    return {
        "params": params,
        "opt_state": optax.adam(1e-3).init(params),
        "rule_state": FeedbackState((jnp.full((2, 2), 0.5), jnp.eye(3))),
    }


def _assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        assert np.asarray(got[k]).dtype == np.asarray(want[k]).dtype, k
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]), err_msg=k)


def _expected(stem: Path) -> dict:
    with np.load(stem.with_name(stem.name + ".expected.npz"), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# ------------------------------------------------------------------------------- version 2


def test_arrays_are_stored_by_key_path_and_load_back_into_the_template(tmp_path):
    tree = _tree()
    save_checkpoint(tmp_path / "state", tree, {"model": "test"})
    arrays, meta = load_checkpoint(tmp_path / "state")
    assert meta["format_version"] == FORMAT_VERSION == 2
    assert {"params/W1", "params/edges/y/x/w", "opt_state/0/count", "opt_state/0/mu/W1", "rule_state/B/1"} <= set(
        arrays
    )
    assert sorted(arrays) == sorted(meta["arrays"]) == sorted(tree_arrays(tree))
    loaded, _ = load_tree(tmp_path / "state", jax.eval_shape(lambda: tree))
    assert jax.tree.structure(loaded) == jax.tree.structure(tree)  # named tuples and all
    assert isinstance(loaded["opt_state"][0], optax.ScaleByAdamState)
    _assert_same(tree_arrays(loaded), tree_arrays(tree))


def test_a_flat_mapping_of_key_paths_is_the_same_checkpoint(tmp_path):
    tree = _tree()
    save_checkpoint(tmp_path / "nested", tree, {})
    save_checkpoint(tmp_path / "flat", tree_arrays(tree), {})
    _assert_same(load_checkpoint(tmp_path / "flat")[0], load_checkpoint(tmp_path / "nested")[0])


@pytest.mark.parametrize(
    "tree, fragment",
    [
        ({"params": {"a b": np.zeros(2)}}, "'a b' is not allowed (in params/'a b')"),
        ({"params": {"W1": np.zeros(2)}, "params/W1": np.ones(2)}, "'params/W1' is given twice"),
        ({"params": {1: np.zeros(2)}}, "1 is not allowed"),
        ({"params//W1": np.zeros(2)}, "'params//W1' is not allowed"),
    ],
)
def test_bad_key_paths_are_refused_at_save_naming_the_path(tmp_path, tree, fragment):
    with pytest.raises(ValueError) as info:
        save_checkpoint(tmp_path / "best", tree, {})
    assert fragment in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "edit, path, fragment",
    [
        (lambda a: a.pop("params/W1"), "params/W1", "array 'params/W1' missing"),
        (lambda a: a.update({"params/W2": np.zeros(1)}), "params/W2", "unexpected array 'params/W2'"),
        (
            lambda a: a.update({"params/W1": np.zeros((3, 2), np.float32)}),
            "params/W1",
            "array 'params/W1' expected shape (2, 3) (from the template), got shape (3, 2)",
        ),
        (
            lambda a: [a.pop(k) for k in list(a) if k.startswith("rule_state/")],
            "rule_state/B/0",
            "'rule_state/B/0' missing",
        ),
    ],
)
def test_a_template_mismatch_names_the_first_path_that_differs(tmp_path, edit, path, fragment):
    tree = _tree()
    stored = tree_arrays(tree)
    edit(stored)
    save_checkpoint(tmp_path / "state", stored, {})
    with pytest.raises(CheckpointMismatch) as info:
        load_tree(tmp_path / "state", jax.eval_shape(lambda: tree))
    assert info.value.path == path and fragment in str(info.value)
    assert str(tmp_path / "state.npz") in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, CheckpointError)  # the CLI maps it to a clean exit


# -------------------------------------------------------------------------- version 1 files


def test_every_version_1_fixture_is_a_version_1_pair_written_at_e2a4e43():
    stems = sorted(p.with_suffix("") for p in V1.rglob("*.json") if p.name != "summary.json")
    assert len(stems) == 7
    for stem in stems:
        assert load_checkpoint(stem)[1]["format_version"] == 1, stem
    assert "e2a4e43" in (Path(__file__).parent / "fixtures" / "make_checkpoints_v1.py").read_text()


def _museum(tmp_path: Path, epochs: int):
    from predcode.experiments.config import parse_toml

    for name in ("train.npy", "val.npy"):
        if not (tmp_path / name).exists():
            shutil.copy(V1 / "museum" / name, tmp_path / name)
    return parse_toml(MUSEUM_TOML.format(epochs=epochs), base_dir=tmp_path)


def test_version_1_museum_state_and_best_load_to_the_arrays_they_held(tmp_path):
    from predcode.learning.step import make_trainer
    from predcode.models.gncn import GNCN

    cfg = _museum(tmp_path, epochs=1)
    model = GNCN(cfg.model)
    params = jax.eval_shape(model.init, jax.random.key(0))
    opt_state = jax.eval_shape(make_trainer(model, cfg.optimizer.build()).init, params)
    state, meta = load_tree(V1 / "museum" / "state0", {"params": params, "opt_state": opt_state})
    assert meta["epoch"] == 1 and any(k.startswith("opt_") for k in meta["arrays"])  # flatten-order names
    _assert_same(tree_arrays(state), _expected(V1 / "museum" / "state0"))
    best, _ = load_tree(V1 / "museum" / "best0", {"params": params})
    _assert_same(tree_arrays(best), _expected(V1 / "museum" / "best0"))
    with pytest.raises(CheckpointMismatch, match=r"stored 21 opt_state arrays by position.*expects 15 "):
        load_tree(V1 / "museum" / "state0", {"params": params, "opt_state": optax.sgd(0.1, momentum=0.9).init(params)})


def test_version_1_museum_run_folder_resumes_bit_exactly(tmp_path):
    from predcode.experiments.fit import fit

    old = tmp_path / "old"
    shutil.copytree(V1 / "museum", old)
    fit(_museum(tmp_path, epochs=2), old, resume=True)
    straight = tmp_path / "straight"
    fit(_museum(tmp_path, epochs=2), straight)
    for name in ("state0", "best0"):
        want, meta_want = load_checkpoint(straight / name)
        got, meta_got = load_checkpoint(old / name)
        assert meta_got["format_version"] == 2 and meta_got["epoch"] == meta_want["epoch"] == 2
        _assert_same(got, want)
    np.testing.assert_array_equal(np.load(old / "vLx0.npy"), np.load(straight / "vLx0.npy"))


def _old_museum_run(tmp_path: Path) -> Path:
    """A copy of the version-1 museum run folder; its config.toml (absolute data paths, as
    ``predcode fit`` writes them) is pointed at the copy."""
    run = tmp_path / "old"
    shutil.copytree(V1 / "museum", run)
    text = (run / "config.toml").read_text()
    written_at = text.split('train_file = "')[1].split('"')[0].removesuffix("train.npy")
    (run / "config.toml").write_text(text.replace(written_at, f"{run}/"))
    return run


def test_version_1_museum_best_loads_in_analyze(tmp_path):
    from predcode.experiments.analyze import load_run

    run = load_run(_old_museum_run(tmp_path))
    _assert_same(tree_arrays({"params": run.params}), _expected(V1 / "museum" / "best0"))


def test_a_checkpoint_of_another_architecture_is_one_clean_cli_error(tmp_path):
    from typer.testing import CliRunner

    from predcode.cli import app

    run = _old_museum_run(tmp_path)
    (run / "config.toml").write_text((run / "config.toml").read_text().replace("[4, 4, 4]", "[4, 4, 6]"))
    result = CliRunner().invoke(app, ["analyze", "--run", str(run)])
    assert result.exit_code == 2, result.output
    assert "best0.npz: array 'params/E3' expected shape (4, 6) (from the template), got shape (4, 4)" in (
        " ".join(result.output.split())
    )
    assert "belongs to another config" in result.output and "Traceback" not in result.output


def test_version_1_pc_network_checkpoints_load_and_resume_bit_exactly(tmp_path):
    from predcode.experiments.config import build_network, parse_toml
    from predcode.experiments.pc_analyze import load_pc_run
    from predcode.experiments.pc_fit import make_pc_trainer, pc_fit

    cfg = parse_toml(PC_TOML.format(epochs=1))
    net = build_network(cfg)
    params = jax.eval_shape(net.init, jax.random.key(0))
    opt_state = jax.eval_shape(make_pc_trainer(cfg, net, n_train=64).init, params)
    state, _ = load_tree(V1 / "pc" / "state0", {"params": params, "opt_state": opt_state})
    _assert_same(tree_arrays(state), _expected(V1 / "pc" / "state0"))
    _, _, best = load_pc_run(V1 / "pc")
    _assert_same(tree_arrays({"params": best}), _expected(V1 / "pc" / "best0"))
    other = build_network(parse_toml(PC_TOML.format(epochs=1).replace("[784, 2, 10]", "[784, 3, 10]")))
    with pytest.raises(CheckpointMismatch, match=r"'params/edges/h1/x/b' expected shape \(3,\).*got shape \(2,\)"):
        load_tree(V1 / "pc" / "best0", {"params": jax.eval_shape(other.init, jax.random.key(0))})

    old = tmp_path / "old"
    shutil.copytree(V1 / "pc", old)
    pc_fit(parse_toml(PC_TOML.format(epochs=2)), old, resume=True)
    straight = tmp_path / "straight"
    pc_fit(parse_toml(PC_TOML.format(epochs=2)), straight)
    want, meta_want = load_checkpoint(straight / "state0")
    got, meta_got = load_checkpoint(old / "state0")
    assert meta_got["epoch"] == meta_want["epoch"] == 2
    _assert_same(got, want)


@pytest.mark.parametrize("name", ["fa", "dfa", "backprop"])
def test_version_1_credit_checkpoints_load_with_their_feedback_matrices(name):
    from predcode.experiments.credit import load_rule_checkpoint

    model, rule, params, state, meta = load_rule_checkpoint(V1 / "credit" / name)
    assert rule.name == name and model.sizes == (6, 5, 4, 3) and meta["test_accuracy"] == 0.5
    tree = {"params": params} if name == "backprop" else {"params": params, "rule_state": state}
    _assert_same(tree_arrays(tree), _expected(V1 / "credit" / name))


def test_a_credit_checkpoint_saved_again_is_version_2_by_key_path(tmp_path):
    from predcode.experiments.credit import load_rule_checkpoint, save_rule_checkpoint

    model, rule, params, state, meta = load_rule_checkpoint(V1 / "credit" / "fa")
    save_rule_checkpoint(tmp_path / "fa", model, rule, params, state, {"test_accuracy": 0.5})
    arrays, meta = load_checkpoint(tmp_path / "fa")
    assert meta["format_version"] == 2
    _assert_same(arrays, _expected(V1 / "credit" / "fa"))
