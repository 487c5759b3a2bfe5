"""``predcode export --format safetensors``: a run's best model of every family, read back with the
safetensors package's own NumPy loader and compared bit for bit with the checkpoint's arrays."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import predcode
from predcode.cli import app
from predcode.experiments.checkpoint import load_checkpoint, load_tree
from predcode.experiments.config import load_config

safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="the export extra is not installed")
from safetensors import safe_open  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"

MUSEUM = """
[model]
kind = "gncn_pdh"
z_dims = [6, 6, 6]
K = 3
n_group = 2
n_top_group = 2

[data]
dataset = "mnist"
n_train = 100
n_val = 50

[train]
batch_size = 50
eval_batch_size = 50
epochs = 1
seed = 3
"""

PC = """
[network]
task = "supervised"
dims = [784, 8, 10]
activation = "tanh"
output_activation = "identity"
output_sigma = 100.0

[inference]
T = 3
learning_rate = 0.1

[data]
n_train = 100
n_val = 50

[train]
batch_size = 50
eval_batch_size = 50
epochs = 1
seed = 3
"""

MLP = """
[model]
family = "mlp"
sizes = [784, 8, 10]
rule = "fa"

[data]
dataset = "mnist"
n_train = 100
n_val = 50

[train]
batch_size = 50
epochs = 1
seed = 3
"""

runner = CliRunner()


def _cli(*args):
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _write_run(folder: Path, name: str, text: str) -> Path:
    """A run folder as `predcode fit` leaves it (config.toml, best0.npz/.json), written through the
    families' own checkpoint writers from freshly initialised parameters: training would change no
    step of the export and costs tens of seconds on a busy 2-core machine."""
    import jax

    from predcode.experiments.checkpoint import save_checkpoint
    from predcode.experiments.config import build_network, dump_toml
    from predcode.experiments.credit import make_rule, save_rule_checkpoint
    from predcode.models import GNCN, MLP

    (folder / f"{name}.toml").write_text(text)
    cfg = load_config(folder / f"{name}.toml")
    run = folder / name
    run.mkdir()
    (run / "config.toml").write_text(dump_toml(cfg))
    key = jax.random.key(3)
    if name == "museum":
        model = GNCN(cfg.model)
        save_checkpoint(run / "best0", {"params": model.init(key)}, {"model": cfg.model.kind, **cfg.model.to_dict()})
    elif name == "pc":
        from predcode.experiments.pc_fit import _metadata  # the metadata the network's fit writes

        save_checkpoint(run / "best0", {"params": build_network(cfg).init(key)}, _metadata(cfg))
    else:
        mlp, rule = MLP(tuple(cfg.model.sizes), activation=cfg.model.activation), make_rule(cfg.model.rule)
        params = mlp.init(key)
        save_rule_checkpoint(run / "best0", mlp, rule, params, rule.init(mlp, params), {"model": "mlp"})
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run folder of each family (museum, PC network, MLP with FA)."""
    folder = tmp_path_factory.mktemp("export")
    return {name: _write_run(folder, name, text) for name, text in (("museum", MUSEUM), ("pc", PC), ("mlp", MLP))}


@pytest.mark.parametrize(
    ("family", "kind", "must_have"),
    [
        ("museum", "gncn_pdh", "params/W1"),
        ("pc", "pc_network_supervised", "params/edges/y/h1/w"),
        ("mlp", "mlp_fa", "rule_state/B/0"),
    ],
)
def test_export_writes_the_checkpoint_arrays_by_key_path_with_metadata(runs, tmp_path, family, kind, must_have):
    run = runs[family]
    target = tmp_path / "model.safetensors"
    result = _cli("export", "--run", str(run), "--format", "safetensors", "--out", str(target))
    assert result.exit_code == 0, result.output
    assert f"{kind} model" in result.output

    exported = safetensors_numpy.load_file(str(target))
    stored, meta = load_checkpoint(run / "best0")
    assert meta["format_version"] == 2
    assert must_have in exported
    assert set(exported) == set(stored)  # a version-2 checkpoint: the same names
    for name, array in stored.items():
        assert exported[name].dtype == array.dtype, name
        assert exported[name].shape == array.shape, name
        np.testing.assert_array_equal(exported[name], array, err_msg=name)

    with safe_open(str(target), framework="numpy") as f:
        header = f.metadata()
    assert header["format"] == "predcode-export"
    assert header["predcode_version"] == predcode.__version__
    assert header["family"] == {"museum": "gncn", "pc": "pc", "mlp": "mlp"}[family]
    assert header["model_kind"] == kind
    assert header["checkpoint"] == "best0"
    assert header["checkpoint_format_version"] == "2"
    assert header["config"] == (run / "config.toml").read_text()
    assert json.loads(header["checkpoint_metadata"])["npz_sha256"] == meta["npz_sha256"]


def test_a_version_1_museum_checkpoint_exports_under_its_version_2_names(tmp_path):
    """The v1 fixture (written at e2a4e43) stored W1, W2; the export names them params/W1, params/W2."""
    run = tmp_path / "museum"
    shutil.copytree(FIXTURES / "runs_e2a4e43" / "museum", run)
    target = tmp_path / "old.safetensors"
    result = _cli("export", "--run", str(run), "--out", str(target))
    assert result.exit_code == 0, result.output
    exported = safetensors_numpy.load_file(str(target))
    stored, meta = load_checkpoint(run / "best0")
    assert meta["format_version"] == 1 and set(stored) == {"W1", "W2"}
    assert set(exported) == {"params/W1", "params/W2"}
    for name in stored:
        np.testing.assert_array_equal(exported[f"params/{name}"], stored[name])
    with safe_open(str(target), framework="numpy") as f:
        assert f.metadata()["checkpoint_format_version"] == "1"


def test_the_export_loads_back_into_the_model_template(runs, tmp_path):
    """What a PyTorch user gets is the model: the exported arrays rebuild the run's parameters."""
    import jax

    from predcode.models import GNCN

    target = tmp_path / "m.safetensors"
    assert _cli("export", "--run", str(runs["museum"]), "--out", str(target)).exit_code == 0
    model = GNCN(load_config(runs["museum"] / "config.toml").model)
    params, _ = load_tree(runs["museum"] / "best0", {"params": jax.eval_shape(model.init, jax.random.key(0))})
    exported = safetensors_numpy.load_file(str(target))
    flat = jax.tree_util.tree_flatten_with_path(params["params"])[0]
    assert len(flat) == len(exported)
    for path, leaf in flat:
        name = "params/" + "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
        np.testing.assert_array_equal(exported[name], np.asarray(leaf))


def test_bad_export_input_is_one_clear_error_with_exit_2(runs, tmp_path):
    target = tmp_path / "m.safetensors"
    cases = [
        (["--run", str(tmp_path / "nope"), "--out", str(target)], "--run"),
        (["--run", str(tmp_path), "--out", str(target)], "config.toml"),
        (["--run", str(runs["pc"]), "--out", str(target), "--format", "onnx"], "--format: expected one of"),
        (["--run", str(runs["pc"]), "--out", str(target), "--trial", "3"], "--trial"),
        (["--run", str(runs["pc"]), "--out", str(tmp_path / "no" / "m.safetensors")], "does not exist"),
        (["--run", str(runs["pc"]), "--out", str(tmp_path)], "is a folder"),
    ]
    for args, fragment in cases:
        result = _cli("export", *args)
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output and fragment in result.output, (args, result.output)
        assert "Traceback" not in result.output
        assert not target.exists()

    target.write_bytes(b"keep me")
    result = _cli("export", "--run", str(runs["pc"]), "--out", str(target))
    assert result.exit_code == 2 and "exists; pass --force" in result.output, result.output
    assert target.read_bytes() == b"keep me"
    result = _cli("export", "--run", str(runs["pc"]), "--out", str(target), "--force")
    assert result.exit_code == 0, result.output
    assert "params/edges/y/h1/w" in safetensors_numpy.load_file(str(target))
