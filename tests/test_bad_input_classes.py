"""The catalogue's second round (issue 18, classes 4 to 10): each class of bad input, several inputs each.

Beside ``tests/test_bad_inputs.py``: each test here covers one *kind* of input through the one
mechanism that refuses it, with several values of that kind, so that a new input of the same kind
is covered too (every integer setting of every config family, every trainer, every loader):

- 4: integers above their documented bound (config files, ``--set``, the API constructors);
- 5: messages printed as text, never as rich markup;
- 6: degenerate batches (0 rows, every row padding);
- 7: the MLP rule trainer's labels and shapes;
- 8: ``.npy`` data files and validation splits;
- 9: checkpoint metadata (strict JSON, the config schema, the run's config.toml);
- 10: messages from the right layer (NaN weights, unwritable or unknown ``--out``, keys, lists,
  a missing optimizer state).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from typer.testing import CliRunner

from predcode import GNCN, GNCNConfig, make_trainer, pad_batch
from predcode.cli import app
from predcode.experiments.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from predcode.experiments.config import (
    FAMILIES,
    ConfigError,
    dump_toml,
    family_specs,
    load_config,
    parse_toml,
    with_overrides,
)
from predcode.learning.rules import BackProp, FeedbackAlignment
from predcode.models.gncn import lateral_matrix
from predcode.models.mlp import MLP
from predcode.models.network import PCNetwork
from predcode.schema import Spec

ROOT = Path(__file__).resolve().parents[1]
SMALL = GNCNConfig(kind="gncn_pdh", x_dim=16, z_dims=(12, 12, 18), K=3)
runner = CliRunner()


def _params(model: GNCN, seed: int = 0) -> dict:
    """Valid museum parameters built in NumPy (no compilation)."""
    rng = np.random.default_rng(seed)
    c = model.config
    params = {}
    for name, shape in model.param_shapes().items():
        if name.startswith("V"):
            group = c.n_top_group if int(name[1:]) == c.L else c.n_group
            params[name] = lateral_matrix(shape[0], group, c.alpha_scale, c.beta_scale)
        elif name.startswith(("Sigma", "Prec")):
            params[name] = np.eye(shape[0], dtype=np.float32)
        else:
            params[name] = (0.05 * rng.standard_normal(shape)).astype(np.float32)
    return params


def _x(n: int = 4, d: int = 16) -> np.ndarray:
    return (np.random.default_rng(0).random((n, d)) > 0.5).astype(np.float32)


def _cli(args, tmp_path, monkeypatch):
    monkeypatch.setenv("PREDCODE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PREDCODE_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "300")
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())


# ------------------------------------------------------------------ 4: integers have upper bounds


def _int_keys():
    for family, cls in FAMILIES.items():
        for key, spec in family_specs(cls).items():
            if spec.kind in ("int", "ints"):
                yield family, cls, key, spec


INT_KEYS = list(_int_keys())


def test_every_integer_setting_of_every_family_declares_an_upper_bound():
    assert len(INT_KEYS) >= 15
    for family, _, key, spec in INT_KEYS:
        assert spec.high is not None, (family, key)
    with pytest.raises(TypeError, match="upper bound"):
        Spec("int", low=1)  # a new integer setting without a bound does not even get declared
    with pytest.raises(TypeError, match="upper bound"):
        Spec("ints")


@pytest.mark.parametrize("family, cls, key, spec", INT_KEYS, ids=[f"{f}:{k}" for f, _, k, _ in INT_KEYS])
def test_an_integer_above_its_bound_is_refused_naming_key_range_and_value(family, cls, key, spec):
    high = int(spec.high)
    low = 1 if spec.kind == "ints" else int(spec.low)
    base = cls()
    for big in (high + 1, 10**12, 99999999999999999999):
        value = [big] * max(spec.min_len, 1) if spec.kind == "ints" else big
        with pytest.raises(ConfigError) as info:
            with_overrides(base, **{key: value})
        msg = str(info.value)
        assert key in msg and f"[{low}, {high}]" in msg and str(big) in msg, msg
    # the largest allowed value itself passes the check of the field
    value = [high] * max(spec.min_len, 1) if spec.kind == "ints" else high
    from predcode.schema import coerce

    assert coerce(key, spec, value, words=False) == (tuple(value) if spec.kind == "ints" else value)


@pytest.mark.parametrize(
    "text, key, bound",
    [
        ("[model]\nK = 1000000000000\n", "model.K", "[1, 100000]"),
        ("[model]\nK = 99999999999999999999\n", "model.K", "[1, 100000]"),
        ("[model]\nz_dims = [12, 12, 2000000]\n", "model.z_dims", "[1, 1048576]"),
        ("[train]\nepochs = 10000000\n", "train.epochs", "[1, 1000000]"),
        ("[network]\n[inference]\nT = 1000001\n", "inference.T", "[0, 100000]"),
        ("[model]\nfamily = 'mlp'\npc_steps = 100001\n", "model.pc_steps", "[1, 100000]"),
    ],
)
def test_a_config_file_with_a_too_large_integer_names_file_line_key_and_range(text, key, bound):
    with pytest.raises(ConfigError) as info:
        parse_toml(text, "cfg.toml")
    msg = str(info.value)
    assert msg.startswith("cfg.toml, line ") and key in msg and bound in msg, msg


@pytest.mark.parametrize(
    "build, fragments",
    [
        (lambda: GNCNConfig(K=10**12), ["model.K", "[1, 100000]", "1000000000000"]),
        (lambda: GNCNConfig(x_dim=2**21), ["model.x_dim", "[1, 1048576]", "2097152"]),
        (lambda: GNCNConfig(z_dims=(12, 2**40)), ["model.z_dims", "[1, 1048576]"]),
        (lambda: MLP((16, 2**21)), ["sizes", "1048576", "2097152"]),
        (lambda: PCNetwork.chain([16, 2**21]), ["dim", "[1, 1048576]", "2097152"]),
        (lambda: make_trainer(PCNetwork.chain([4, 2]), optax.sgd(0.1), T=10**9), ["T", "[0, 100000]"]),
        (lambda: pad_batch(_x(2), 2**30), ["batch_size", "[1, 1048576]", str(2**30)]),
        (lambda: GNCN(SMALL).settle(_params(GNCN(SMALL)), _x(), steps=10**12), ["steps", "[1, 100000]"]),
    ],
)
def test_the_api_refuses_a_too_large_integer_where_the_object_is_built(build, fragments):
    with pytest.raises(ValueError) as info:
        build()
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_the_config_docs_give_every_integer_bound():
    doc = (ROOT / "docs/config.md").read_text()
    for family, _, key, spec in INT_KEYS:
        name = key.rsplit(".", 1)[-1]
        rows = [line for line in doc.splitlines() if line.startswith(f"| `{name}` |")]
        assert any(str(int(spec.high)) in row for row in rows), (family, key, int(spec.high))


# ------------------------------------------------------------ 5: messages are text, not markup


@pytest.mark.parametrize(
    "make_args, fragments",
    [
        (lambda t: ["fit", "--config", _write(t, "a.toml", "[trian]\nepochs = 1\n")], ["[trian]", "[train]"]),
        (
            lambda t: ["fit", "--config", _write(t, "b.toml", "[model]\nfamily = 'mlp'\n[data]\nbinarize = true\n")],
            ["[data] takes dataset"],
        ),
        (lambda t: ["fit", "--config", t / "[bold]x[/bold].toml"], ["[bold]x[/bold].toml"]),
        (lambda t: ["analyze", "--run", t / "[red]run"], ["[red]run"]),
        (lambda t: ["fit", "--config", _write(t, "c.toml", ""), "--set", "model[x]=1"], ["model[x]"]),
        (lambda t: ["credit", "mnist", "--rules", "[b]fa[/b]", "--out", t / "o"], ["[b]fa[/b]"]),
    ],
)
def test_cli_messages_keep_their_bracketed_text(make_args, fragments, tmp_path, monkeypatch):
    code, output = _cli(make_args(tmp_path), tmp_path, monkeypatch)
    assert code == 2, output
    for fragment in fragments:
        assert fragment in output, output


def _write(tmp: Path, name: str, text: str) -> Path:
    (tmp / name).write_text(text)
    return tmp / name


def test_every_message_of_the_cli_goes_through_the_one_plain_text_printer():
    source = (ROOT / "src/predcode/cli.py").read_text()
    assert source.count("console.print(") == 1  # inside say()
    assert "[red]" not in source and "[bold]" not in source and "escape(" not in source
    assert re.findall(r'TextColumn\("[^"]*"\)', source) == []  # progress columns: markup=False
    for path in (ROOT / "src/predcode").rglob("*.py"):
        if path.name != "cli.py":
            text = path.read_text()
            assert not re.search(r"\b(rprint|typer\.echo|Console\()", text), path


# --------------------------------------------------------------------- 6: degenerate batches


@pytest.fixture(scope="module")
def museum():
    model = GNCN(SMALL)
    trainer = make_trainer(model)
    params = _params(model)
    return model, trainer, params, trainer.init(params)


@pytest.mark.parametrize("n", [1, 4, 7])
def test_a_museum_batch_of_padding_only_is_refused_by_step_evaluate_and_settle(museum, n):
    model, trainer, params, opt = museum
    x, w = _x(n), np.zeros(n, np.float32)
    for call in (
        lambda: trainer.step(params, opt, x, w),
        lambda: trainer.evaluate(params, x, w),
        lambda: model.settle(params, x, weights=w),
    ):
        with pytest.raises(
            ValueError, match=rf"weights: expected at least one real row .* got all {n} rows weighted 0"
        ):
            call()


def test_an_empty_batch_is_refused_where_it_is_built_and_where_it_enters(museum):
    model, trainer, params, opt = museum
    for x in (_x(4)[:0], np.zeros((0, 16), np.float32)):
        for size in (1, 4):
            with pytest.raises(ValueError, match="x: expected a batch of at least 1 row, got 0 rows"):
                pad_batch(x, size)
        with pytest.raises(ValueError, match="x: expected a batch of at least 1 row, got 0 rows"):
            trainer.step(params, opt, x, np.zeros(0, np.float32))
    net = PCNetwork.chain([16, 8, 4])
    pc = make_trainer(net, optax.adam(1e-3), T=2)
    pc_params = net.init(jax.random.key(0))
    pc_opt = pc.init(pc_params)
    for clamps in ({"x0": np.zeros((0, 16), np.float32)}, {"x0": np.zeros((0, 16)), "x2": np.zeros((0, 4))}):
        with pytest.raises(ValueError, match="clamps: expected a batch of at least 1 row, got 0 rows"):
            pc.step(pc_params, pc_opt, clamps)
    mlp = MLP((16, 8, 4))
    rt = make_trainer(mlp, optax.sgd(0.1), rule=BackProp())
    mp = mlp.init(jax.random.key(0))
    rs, ro = rt.init(mp)
    with pytest.raises(ValueError, match="x: expected a batch of at least 1 row, got 0 rows"):
        rt.step(mp, rs, ro, np.zeros((0, 16), np.float32), np.zeros(0, np.int32))


# ---------------------------------------------------------------- 7: the MLP trainer's labels


@pytest.fixture(scope="module", params=["backprop", "fa"])
def rule_trainer(request):
    mlp = MLP((16, 8, 4))
    rule = BackProp() if request.param == "backprop" else FeedbackAlignment(key=0)
    trainer = make_trainer(mlp, optax.sgd(0.1), rule=rule)
    params = mlp.init(jax.random.key(0))
    return trainer, params, *trainer.init(params)


_X5 = np.random.default_rng(0).random((5, 16)).astype(np.float32)


@pytest.mark.parametrize(
    "x, y, fragments",
    [
        (_X5, np.array([0, 1, 2, 3, 99]), ["y:", "[0, 3]", "got 99 at index 4"]),
        (_X5, np.array([0, -1, 2, 3, 1]), ["y:", "[0, 3]", "got -1 at index 1"]),
        (_X5, np.array([0, 1, 2, 3, 4]), ["y:", "[0, 3]", "got 4 at index 4"]),
        (_X5, np.array([0, 1, 1.5, 3, 2], np.float32), ["y:", "integer class labels", "got 1.5 at index 2"]),
        (_X5, np.array([0, 1, np.nan, 3, 2], np.float32), ["y:", "integer class labels", "got nan at index 2"]),
        (_X5, np.array([0, 1, 2]), ["y:", "expected shape (5,)", "got shape (3,)"]),
        (_X5, np.zeros((5, 3), np.float32), ["y:", "(5, 4)", "got shape (5, 3)"]),
        (_X5, np.array(["a"] * 5), ["y:", "integer class labels", "got dtype <U1"]),
        (_X5[:, :10], np.array([0, 1, 2, 3, 0]), ["x:", "expected shape (batch, 16)", "got shape (5, 10)"]),
        (_X5.astype(np.int32), np.array([0, 1, 2, 3, 0]), ["x:", "floating-point", "got dtype int32"]),
    ],
)
def test_the_mlp_rule_trainer_names_bad_labels_and_shapes(rule_trainer, x, y, fragments):
    trainer, params, rule_state, opt_state = rule_trainer
    with pytest.raises(ValueError) as info:
        trainer.step(params, rule_state, opt_state, x, y)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_the_mlp_rule_trainer_still_takes_good_labels_and_one_hot_rows(rule_trainer):
    trainer, params, rule_state, opt_state = rule_trainer
    for y in (np.array([0, 1, 2, 3, 0]), np.array([0.0, 1.0, 2.0, 3.0, 0.0], np.float32), np.eye(4)[[0, 1, 2, 3, 0]]):
        new, _, _, loss = trainer.step(params, rule_state, opt_state, _X5, y)
        assert np.isfinite(float(loss)) and all(np.all(np.isfinite(layer.W)) for layer in new)


# ------------------------------------------------------------------------ 8: data files


def _data_toml(tmp: Path, array: np.ndarray, n_val: int = 4, name: str = "x.npy") -> Path:
    np.save(tmp / name, array)
    return _write(
        tmp,
        "cfg.toml",
        f'[model]\nkind = "gncn_pdh"\nx_dim = 16\nz_dims = [12, 12, 18]\nK = 3\n'
        f'[data]\ntrain_file = "{name}"\nn_val = {n_val}\n[train]\nepochs = 1\nbatch_size = 8\n',
    )


def _nan_at(row: int, col: int, value: float = np.nan, n: int = 20) -> np.ndarray:
    x = _x(n)
    x[row, col] = value
    return x


@pytest.mark.parametrize(
    "array, n_val, fragments",
    [
        (_nan_at(3, 5), 4, ["data.train_file", "1 NaN and 0 infinite", "first at row 3, column 5"]),
        (_nan_at(0, 0, np.inf), 4, ["0 NaN and 1 infinite", "first at row 0, column 0"]),
        (_nan_at(19, 15, -np.inf), 4, ["0 NaN and 1 infinite", "first at row 19, column 15"]),
        (_x(20)[:0], 4, ["data.train_file", "expected at least 1 row", "got 0 rows"]),
        (_x(1), 10, ["data.n_val", "at most 0 validation rows", "1 row(s) of data.train_file", "got 10"]),
        (_x(5), 5, ["data.n_val", "at most 4 validation rows", "5 row(s)", "got 5"]),
        (_x(20).astype(np.complex64), 4, ["data.train_file", "real numbers", "complex numbers"]),
        (_x(20).astype(np.complex128) * 1j, 4, ["complex numbers (dtype complex128)"]),
        (np.array([["a"] * 16] * 3), 1, ["data.train_file", "real numbers", "got strings"]),
        (np.full((4, 16), 2.0, np.float32), 1, ["data.train_file", "values in [0, 1]", "from 2 to 2"]),
    ],
)
def test_a_bad_data_file_gets_one_config_error_naming_the_file(array, n_val, fragments, tmp_path):
    from predcode.experiments.fit import load_fit_data

    cfg = load_config(_data_toml(tmp_path, array, n_val))
    with pytest.raises(ConfigError) as info:
        load_fit_data(cfg)
    msg = str(info.value)
    for fragment in fragments:
        assert fragment in msg, msg
    if "n_val" not in fragments[0]:
        assert str(tmp_path / "x.npy") in msg, msg


def test_a_split_that_leaves_no_training_row_is_a_config_error_with_exit_2(tmp_path, monkeypatch):
    from predcode.experiments.data_files import check_split

    for n, n_val in ((1, 1), (1, 10), (60000, 60000), (10, 0)):
        with pytest.raises(ConfigError, match=rf"data.n_val: .* {n} row\(s\) of the mnist training set .* got {n_val}"):
            check_split(n, n_val, "the mnist training set")
    check_split(2, 1, "two rows")
    code, output = _cli(
        ["fit", "--config", _data_toml(tmp_path, _x(1), 10), "--out", tmp_path / "r"], tmp_path, monkeypatch
    )
    assert code == 2 and "data.n_val" in output and "x.npy" in output and "got 10" in output, output
    assert not (tmp_path / "r").exists()  # refused before the run folder is touched


# ----------------------------------------------------------------- 9: checkpoint metadata


def _museum_run(tmp: Path, params=None) -> Path:
    """A run folder of the SMALL model: config.toml and best0 with the metadata fit writes."""
    from predcode.experiments.fit import _model_metadata

    run = tmp / "run"
    run.mkdir()
    cfg = load_config(_data_toml(tmp, _x(20)))
    (run / "config.toml").write_text(dump_toml(cfg))
    model = GNCN(cfg.model)
    save_checkpoint(run / "best0", {"params": _params(model) if params is None else params}, _model_metadata(model))
    return run


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_META_EDITS = [
    ({"kind": "gncn_t9"}, ["kind", "one of 'gncn_t1'", "'gncn_t9'"]),
    ({"model": "gncn_t1"}, ['"model" to equal "kind"', "'gncn_t1'", "'gncn_pdh'"]),
    ({"z_dims": [12, 12, 36]}, ["z_dims", "[12, 12, 36]", "[12, 12, 18]", "config.toml"]),
    ({"z_dims": [12, 12]}, ["model.z_dims[1]", "a multiple of n_top_group=18", "got 12"]),
    ({"K": "5"}, ["K", "[1, 100000]", "'5'", "without quotes"]),
    ({"K": -5}, ["K", "[1, 100000]", "-5"]),
    ({"K": 7}, ["K is 7 in the checkpoint", "3 in the run's config.toml"]),
    ({"phi": "swish"}, ["phi", "one of 'identity'", "'swish'"]),
    ({"x_dim": 15}, ["x_dim is 15 in the checkpoint", "16 in the run's config.toml"]),
    ({"beta": "fast"}, ["beta", "a number > 0", "'fast'"]),
]


@pytest.mark.parametrize(
    "edit, fragments", _META_EDITS, ids=[next(iter(e)) + "=" + str(e[next(iter(e))]) for e, _ in _META_EDITS]
)
def test_edited_checkpoint_metadata_is_refused_and_the_files_stay_as_they_were(edit, fragments, tmp_path):
    from predcode.experiments.analyze import load_run

    run = _museum_run(tmp_path)
    doc = json.loads((run / "best0.json").read_text())
    doc.update(edit)
    (run / "best0.json").write_text(json.dumps(doc))  # the array hash stays valid
    before = {p.name: _sha(p) for p in run.iterdir()}
    with pytest.raises(CheckpointError) as info:
        load_run(run, 0)
    msg = str(info.value)
    assert str(run / "best0.json") in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg
    assert {p.name: _sha(p) for p in run.iterdir()} == before  # never corrupted or lost


def test_resume_checks_the_metadata_of_state_and_best(tmp_path):
    from predcode.experiments.fit import _load_state

    run = _museum_run(tmp_path)
    model = GNCN(SMALL)
    for edit in ({"K": "5"}, {"kind": "gncn_t9"}, {"phi": "swish"}):
        doc = json.loads((run / "best0.json").read_text())
        (run / "state0.json").write_text(json.dumps({**doc, **edit}))
        (run / "state0.npz").write_bytes((run / "best0.npz").read_bytes())
        with pytest.raises(CheckpointError, match="state0.json: the recorded model is invalid"):
            _load_state(run, model, make_trainer(model), 0)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_non_strict_json_constant_is_refused_when_read(constant, tmp_path):
    run = _museum_run(tmp_path)
    text = (run / "best0.json").read_text()
    (run / "best0.json").write_text(text.replace('"leak": 0.001', f'"leak": {constant}', 1))
    assert constant in (run / "best0.json").read_text()
    with pytest.raises(CheckpointError, match=rf"expected strict JSON, found the non-standard constant {constant}"):
        load_checkpoint(run / "best0")


def test_mlp_and_network_checkpoint_metadata_are_checked_with_their_schemas(tmp_path):
    from predcode.experiments.credit import load_rule_checkpoint, save_rule_checkpoint

    mlp = MLP((16, 8, 4))
    params = mlp.init(jax.random.key(0))
    for edit, fragment in (
        ({"sizes": [16, "8", 4]}, "sizes"),
        ({"activation": "swish"}, "activation"),
        ({"rule": "sgd"}, "rule"),
        ({"sizes": [16, 8, 10**7]}, "[1, 1048576]"),
    ):
        save_rule_checkpoint(tmp_path / "m", mlp, BackProp(), params, ())
        doc = json.loads((tmp_path / "m.json").read_text())
        (tmp_path / "m.json").write_text(json.dumps({**doc, **edit}))
        with pytest.raises(CheckpointError, match=re.escape(fragment)):
            load_rule_checkpoint(tmp_path / "m")

    from predcode.experiments.pc_analyze import load_pc_run
    from predcode.experiments.pc_fit import _metadata

    cfg = parse_toml("[network]\ntask = 'generative'\ndims = [4, 8, 784]\n[inference]\nT = 2\n")
    from predcode.experiments.config import build_network

    net = build_network(cfg)
    run = tmp_path / "pc"
    run.mkdir()
    (run / "config.toml").write_text(dump_toml(cfg))
    for edit, fragment in (
        ({"dims": [4, 16, 784]}, "dims is [4, 16, 784] in the checkpoint"),
        ({"cell": "cauchy"}, "cell"),
    ):
        meta = _metadata(cfg, trial=0)
        meta["network"] = {**meta["network"], **edit}
        save_checkpoint(run / "best0", {"params": net.init(jax.random.key(0))}, meta)
        with pytest.raises(CheckpointError, match=re.escape(fragment)):
            load_pc_run(run, 0)


# ------------------------------------------------------------ 10: messages from the right layer


@pytest.mark.parametrize("array, value", [("W1", np.nan), ("E2", np.inf), ("Sigma1", -np.inf)])
def test_sample_of_a_checkpoint_with_non_finite_weights_names_checkpoint_and_array(array, value, tmp_path, monkeypatch):
    model = GNCN(SMALL)
    params = _params(model)
    params[array] = params[array].copy()
    params[array].flat[3] = value
    run = tmp_path / "run"
    run.mkdir()
    from predcode.experiments.fit import _model_metadata

    cfg = load_config(_data_toml(tmp_path, _x(20)))
    (run / "config.toml").write_text(dump_toml(cfg))
    save_checkpoint(run / "best0", {"params": params}, _model_metadata(model), allow_nonfinite=True)
    code, output = _cli(["sample", "--run", run, "-n", "4"], tmp_path, monkeypatch)
    assert code == 1, output
    assert "best0.npz" in output and f"'params/{array}'" in output and "expected finite values" in output, output


def test_a_figure_is_written_in_the_format_its_suffix_names_or_refused(tmp_path):
    from predcode.experiments.plots import image_grid

    images = np.random.default_rng(0).random((4, 28 * 28))
    magic = {".png": b"\x89PNG", ".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff", ".pdf": b"%PDF", ".svg": b"<?xml"}
    for suffix, head in magic.items():
        path = image_grid(images, tmp_path / f"s{suffix}", ncols=2)
        assert path.read_bytes()[: len(head)] == head, suffix
    for name in ("s.xyz", "s", "s.png.bak"):
        with pytest.raises(ValueError, match=r"expected a file name ending in one of .*\.jpg.*\.png"):
            image_grid(images, tmp_path / name, ncols=2)
        assert not (tmp_path / name).exists()


def test_sample_refuses_an_unknown_suffix_before_any_work(tmp_path, monkeypatch):
    for name in ("s.xyz", "samples", "s.npy"):
        code, output = _cli(["sample", "--run", tmp_path / "no-run", "--out", tmp_path / name], tmp_path, monkeypatch)
        assert code == 2 and "--out" in output and name in output and "suffix" in output, output


def test_an_unwritable_output_names_the_users_path_not_a_temporary_file(tmp_path, monkeypatch):
    import tempfile

    from predcode.experiments.atomic import write_text

    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(OSError) as info:
        write_text(tmp_path / "file" / "s.png", "x")
    assert str(tmp_path / "file" / "s.png") in str(info.value) and ".tmp" not in str(info.value)

    def refuse(*args, dir=None, prefix="", suffix=""):
        raise PermissionError(13, "Permission denied", f"{dir}/{prefix}abc{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    for name in ("s.png", "out.json"):
        with pytest.raises(PermissionError) as info:
            write_text(tmp_path / "ro" / name, "x")
        msg = str(info.value)
        assert str(tmp_path / "ro" / name) in msg and "Permission denied" in msg and "ro" in msg, msg
        assert ".tmp" not in msg and "abc" not in msg, msg


_MLP = MLP((16, 8, 4))


@pytest.mark.parametrize(
    "call, fragments",
    [
        (lambda: GNCN(SMALL).init(0), ["key:", "a JAX random key", "got int 0", "jax.random.key"]),
        (lambda: GNCN(SMALL).init(None), ["key:", "got NoneType None"]),
        (lambda: GNCN(SMALL).init("seed"), ["key:", "got str 'seed'"]),
        (lambda: GNCN(SMALL).init(np.zeros(3)), ["key:", "dtype float64 and shape (3,)"]),
        (lambda: PCNetwork.chain([4, 2]).init(7), ["key:", "got int 7"]),
        (lambda: _MLP.init(None), ["key:", "got NoneType None"]),
        (lambda: GNCN(SMALL).settle(_params(GNCN(SMALL)), _x().tolist()), ["x:", "a Python list of 4", "np.asarray"]),
        (
            lambda: GNCN(SMALL).settle(_params(GNCN(SMALL)), _x(), mask=[[1.0] * 16] * 4),
            ["mask:", "expected an array, got a Python list"],
        ),
    ],
)
def test_keys_and_python_lists_get_predcodes_message(call, fragments):
    with pytest.raises(ValueError) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_a_missing_optimizer_state_is_named_by_every_trainer(museum):
    model, trainer, params, _ = museum
    fragments = "opt_state: expected the optimizer state that trainer.init(params) returns, got None"
    with pytest.raises(ValueError, match=re.escape(fragments)):
        trainer.step(params, None, _x(), np.ones(4, np.float32))
    net = PCNetwork.chain([16, 4])
    pc = make_trainer(net, optax.adam(1e-3), T=2)
    with pytest.raises(ValueError, match=re.escape(fragments)):
        pc.step(net.init(jax.random.key(0)), None, {"x0": _x()})
    rt = make_trainer(_MLP, optax.sgd(0.1), rule=BackProp())
    mp = _MLP.init(jax.random.key(0))
    with pytest.raises(ValueError, match=re.escape(fragments)):
        rt.step(mp, (), None, _X5, np.array([0, 1, 2, 3, 0]))
    fa = make_trainer(_MLP, optax.sgd(0.1), rule=FeedbackAlignment(key=0))
    with pytest.raises(ValueError, match="rule_state: FeedbackAlignment"):
        fa.step(mp, None, fa.init(mp)[1], _X5, np.array([0, 1, 2, 3, 0]))
