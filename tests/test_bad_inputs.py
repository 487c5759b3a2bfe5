"""The catalogue of bad inputs: every one gives one clear error of its documented type.

Each case feeds predcode one bad input from outside (an IDX file, a download, a config, an array
handed to the API, a checkpoint, a run folder) and checks that exactly the documented exception
type is raised, with a message that names the parameter, says what was expected and what was got,
and says how to fix it. The command-line cases check the exit code (2 for usage errors, 1 for
failures) and that no traceback is printed. The promises are listed in docs/reliability.md.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from predcode import GNCN, GNCNConfig, make_trainer, pad_batch
from predcode.cli import app
from predcode.data import DatasetError, load, read_idx_images, read_idx_labels, read_idx_pair
from predcode.data import datasets as ds
from predcode.experiments.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from predcode.experiments.config import ConfigError, dump_toml, load_config, parse_legacy, parse_toml
from predcode.experiments.fit import RunFolderError, fit
from predcode.experiments.train import evaluate, train
from predcode.models.gncn import lateral_matrix

# A small GNCN-PDH (lateral groups of 12 and 18 units) so array checks run without real data.
SMALL = GNCNConfig(kind="gncn_pdh", x_dim=16, z_dims=(12, 12, 18), K=3)


def _params(model: GNCN, seed: int = 0) -> dict:
    """Valid parameters built in NumPy (no compilation): weights N(0, 0.05^2), V fixed, Sigma = Prec = I."""
    rng = np.random.default_rng(seed)
    c = model.config
    params = {}
    for name, shape in model.param_shapes().items():
        if name.startswith("V"):
            l = int(name[1:])
            params[name] = lateral_matrix(
                shape[0], c.n_top_group if l == c.L else c.n_group, c.alpha_scale, c.beta_scale
            )
        elif name.startswith(("Sigma", "Prec")):
            params[name] = np.eye(shape[0], dtype=np.float32)
        else:
            params[name] = (0.05 * rng.standard_normal(shape)).astype(np.float32)
    return params


@pytest.fixture(scope="module")
def small():
    model = GNCN(SMALL)
    return model, _params(model)


def _x(n: int = 4, d: int = 16) -> np.ndarray:
    return (np.random.default_rng(0).random((n, d)) > 0.5).astype(np.float32)


# ------------------------------------------------------------------------------------ file makers


def _idx(path: Path, magic: int, dims: tuple[int, ...], payload: bytes) -> Path:
    path.write_bytes(gzip.compress(struct.pack(f">{1 + len(dims)}I", magic, *dims) + payload))
    return path


def _toml(tmp: Path, text: str) -> Path:
    path = tmp / "cfg.toml"
    path.write_text(text)
    return path


def _pair(tmp: Path, arrays=None) -> Path:
    arrays = arrays or {"W1": np.ones((3, 3), np.float32), "W2": np.zeros((2, 3), np.float32)}
    save_checkpoint(tmp / "best", arrays, {"model": "test"})
    return tmp / "best"


def _rewrite_npz(stem: Path, arrays: dict, **savez) -> None:
    """Replace the npz of a pair and re-record its hash, so only the content check can object."""
    np.savez(stem.with_suffix(".npz"), **arrays, **savez)
    doc = json.loads(stem.with_suffix(".json").read_text())
    doc["npz_sha256"] = hashlib.sha256(stem.with_suffix(".npz").read_bytes()).hexdigest()
    stem.with_suffix(".json").write_text(json.dumps(doc))


def _edit_json(stem: Path, **changes) -> None:
    doc = json.loads(stem.with_suffix(".json").read_text())
    doc.update(changes)
    stem.with_suffix(".json").write_text(json.dumps(doc))


class _Marker:
    """Unpickling this object creates the marker file: proof that code from the file would run."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _data_cfg(tmp: Path, extra: str = "") -> Path:
    """A config training on a 20-image .npy file (no dataset, no compile needed to reach the checks)."""
    np.save(tmp / "x.npy", _x(20))
    return _toml(
        tmp,
        f'[model]\nkind = "gncn_pdh"\nx_dim = 16\nz_dims = [12, 12, 18]\nK = 3\n'
        f'[data]\ntrain_file = "x.npy"\nn_val = 4\n[train]\nepochs = 1\nbatch_size = 8\n{extra}',
    )


# ----------------------------------------------------------------------------------- the catalogue


@dataclass
class Case:
    """One bad input: ``run(tmp_path, small)`` must raise ``error`` with every fragment in its message."""

    id: str
    error: type[BaseException]
    run: Callable
    param: str  # the parameter (or file) the message must name
    expected: str  # what the message says was expected
    got: str  # what it says was found
    fix: str  # the remedy it offers
    extra: list[str] = field(default_factory=list)


CASES: list[Case] = []


def case(id, error, param, expected, got, fix, *extra):
    def register(fn):
        CASES.append(Case(id, error, fn, param, expected, got, fix, list(extra)))
        return fn

    return register


# --- IDX files ------------------------------------------------------------------------------------


@case("idx/images-wrong-magic", DatasetError, "i.gz", "magic number 2051", "found 2049", "Delete the file")
def _(tmp, small):
    read_idx_images(_idx(tmp / "i.gz", 2049, (1, 28, 28), bytes(784)))


@case("idx/labels-wrong-magic", DatasetError, "l.gz", "magic number 2049", "found 2051", "Delete the file")
def _(tmp, small):
    read_idx_labels(_idx(tmp / "l.gz", 2051, (1,), bytes(1)))


@case(
    "idx/images-truncated",
    DatasetError,
    "i.gz",
    "expected 2352 payload bytes",
    "found 1568",
    "Delete the file",
    "truncated",
)
def _(tmp, small):
    read_idx_images(_idx(tmp / "i.gz", 2051, (3, 28, 28), bytes(2 * 784)))


@case("idx/labels-truncated", DatasetError, "l.gz", "expected 5 payload bytes", "found 4", "Delete the file")
def _(tmp, small):
    read_idx_labels(_idx(tmp / "l.gz", 2049, (5,), bytes(4)))


@case("idx/header-cut-short", DatasetError, "i.gz", "header of 16 bytes", "found only 6 bytes", "Delete the file")
def _(tmp, small):
    (tmp / "i.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03\x00\x00"))
    read_idx_images(tmp / "i.gz")


@case("idx/wrong-image-dimensions", DatasetError, "i.gz", "expected 28x28 images", "found 32x32", "Delete the file")
def _(tmp, small):
    read_idx_images(_idx(tmp / "i.gz", 2051, (1, 32, 32), bytes(32 * 32)))


@case("idx/trailing-bytes", DatasetError, "i.gz", "expected 784 payload bytes", "found 790", "Delete the file")
def _(tmp, small):
    read_idx_images(_idx(tmp / "i.gz", 2051, (1, 28, 28), bytes(790)))


@case(
    "idx/labels-and-images-counts-differ",
    DatasetError,
    "l.gz",
    "expected equal counts",
    "3 images but",
    "replace both",
    "2 labels",
)
def _(tmp, small):
    read_idx_pair(_idx(tmp / "i.gz", 2051, (3, 28, 28), bytes(3 * 784)), _idx(tmp / "l.gz", 2049, (2,), bytes(2)))


@case(
    "idx/gzip-garbage",
    DatasetError,
    "g.gz",
    "expected a complete gzip-compressed IDX file",
    "broken gzip stream",
    "Delete the file",
)
def _(tmp, small):
    (tmp / "g.gz").write_bytes(b"\x1f\x8b not really gzip at all")
    read_idx_labels(tmp / "g.gz")


@case(
    "idx/gzip-stream-cut",
    DatasetError,
    "c.gz",
    "expected a complete gzip-compressed IDX file",
    "broken gzip stream",
    "Delete the file",
)
def _(tmp, small):
    (tmp / "c.gz").write_bytes(gzip.compress(struct.pack(">II", 2049, 1000) + bytes(1000))[:-20])
    read_idx_labels(tmp / "c.gz")


# --- downloads and dataset files ----------------------------------------------------------------


def _dataset_env(tmp, monkeypatch, fetch=None, offline=False):
    monkeypatch.setenv("PREDCODE_DATA", str(tmp / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp / "xdg"))
    if offline:
        monkeypatch.setenv("PREDCODE_OFFLINE", "1")
    else:
        monkeypatch.delenv("PREDCODE_OFFLINE", raising=False)
    monkeypatch.setattr(ds, "_fetch", fetch or (lambda url, dest: (_ for _ in ()).throw(OSError("no network"))))


@case(
    "download/local-copy-checksum-mismatch",
    DatasetError,
    "t10k-labels-idx1-ubyte.gz",
    "sha256 mismatch: expected " + ds.SHA256["mnist"]["t10k-labels-idx1-ubyte.gz"],
    "found",
    "Delete it",
)
def _(tmp, small, monkeypatch=None):
    (tmp / "data" / "mnist").mkdir(parents=True)
    (tmp / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"tampered"))
    ds.locate("mnist", "t10k-labels-idx1-ubyte.gz")


@case(
    "download/wrong-bytes-from-every-mirror",
    DatasetError,
    "t10k-labels-idx1-ubyte.gz",
    "expected " + ds.SHA256["mnist"]["t10k-labels-idx1-ubyte.gz"],
    "downloaded file has sha256",
    "set PREDCODE_DATA",
)
def _(tmp, small, monkeypatch=None):
    try:
        ds.locate("mnist", "t10k-labels-idx1-ubyte.gz")
    finally:
        assert list((tmp / "xdg" / "predcode" / "mnist").iterdir()) == [], "no partial download may be kept"


@case(
    "download/interrupted-transfer",
    DatasetError,
    "t10k-labels-idx1-ubyte.gz",
    "was not found",
    "connection reset by peer",
    "allow the download",
)
def _(tmp, small, monkeypatch=None):
    try:
        ds.locate("mnist", "t10k-labels-idx1-ubyte.gz")
    finally:
        assert list((tmp / "xdg" / "predcode" / "mnist").iterdir()) == [], "no partial download may be kept"


@case(
    "download/offline-and-missing",
    DatasetError,
    "PREDCODE_OFFLINE",
    "was not found",
    "downloading is disabled",
    "set PREDCODE_DATA",
)
def _(tmp, small, monkeypatch=None):
    ds.locate("kmnist", "t10k-labels-idx1-ubyte.gz")


@case("data/unknown-dataset-name", ValueError, "name", "one of 'mnist', 'fashion-mnist', 'kmnist'", "'mnits'", "one of")
def _(tmp, small):
    load("mnits", "train")


_DOWNLOAD_FETCH = {
    "download/wrong-bytes-from-every-mirror": lambda url, dest: Path(dest).write_bytes(b"not the file"),
    "download/interrupted-transfer": lambda url, dest: (
        Path(dest).write_bytes(b"half a fi"),
        (_ for _ in ()).throw(OSError("connection reset by peer")),
    ),
}


@case(
    "data/train-file-holds-a-pickle",
    ConfigError,
    "data.train_file",
    "a readable .npy array without pickles",
    "allow_pickle=False",
    "x.npy",
)
def _(tmp, small):
    evil = np.empty(1, dtype=object)
    evil[0] = _Marker(str(tmp / "marker"))
    cfg = load_config(_data_cfg(tmp))
    np.save(tmp / "x.npy", evil, allow_pickle=True)
    try:
        fit(cfg, tmp / "run")
    finally:
        assert not (tmp / "marker").exists(), "the pickle ran"
        assert not (tmp / "run").exists(), "the run folder is touched only after the data loaded"


@case(
    "data/train-file-with-nan",
    ConfigError,
    "data.train_file",
    "expected finite values",
    "got 1 NaN and 0 infinite value(s) (first at row 3, column 3",
    "drop or repair those rows",
    "x.npy",
)
def _(tmp, small):
    cfg = load_config(_data_cfg(tmp))
    x = _x(20)
    x[3, 3] = np.nan
    np.save(tmp / "x.npy", x)
    fit(cfg, tmp / "run")


# --- configs (TOML and the legacy format) --------------------------------------------------------

_PDH = '[model]\nkind = "gncn_pdh"\n'


def _toml_case(id, text, param, expected, got, fix, *extra, legacy=False):
    @case(id, ConfigError, param, expected, got, fix, *extra)
    def _(tmp, small):
        if legacy:
            parse_legacy(text, "fit.cfg")
        else:
            parse_toml(text, "cfg.toml")


_toml_case(
    "config/unknown-key",
    "[train]\nbach_size = 64\n",
    "train.bach_size",
    "did you mean",
    "'train.bach_size'",
    "'train.batch_size'",
    "line 2",
)
_toml_case("config/unknown-section", "[trian]\nepochs = 3\n", "[trian]", "did you mean", "unknown section", "[train]")
_toml_case(
    "config/wrong-type-quoted-number",
    _PDH + 'K = "50"\n',
    "model.K",
    "an integer in [1, 100000]",
    "got '50'",
    "write the number without quotes",
)
_toml_case(
    "config/wrong-type-bool-for-number",
    "[optimizer]\nlearning_rate = true\n",
    "optimizer.learning_rate",
    "a number > 0",
    "got True",
    "true/false is not a number",
)
_toml_case(
    "config/K-below-1",
    _PDH + "K = 0\n",
    "model.K",
    "an integer in [1, 100000]",
    "got 0",
    "the museum uses 50",
    "line 3",
)
_toml_case("config/beta-zero", _PDH + "beta = 0\n", "model.beta", "a number > 0", "got 0", "the museum uses 0.1")
_toml_case(
    "config/beta-negative", _PDH + "beta = -0.1\n", "model.beta", "a number > 0", "got -0.1", "the museum uses 0.1"
)
_toml_case(
    "config/beta-not-finite",
    _PDH + "beta = inf\n",
    "model.beta",
    "a finite number > 0",
    "got inf",
    "the museum uses 0.1",
)
_toml_case(
    "config/batch-size-below-1",
    "[train]\nbatch_size = 0\n",
    "train.batch_size",
    "an integer in [1, 1048576]",
    "got 0",
    "the walkthrough uses 512",
)
_toml_case(
    "config/learning-rate-zero",
    "[optimizer]\nlearning_rate = 0.0\n",
    "optimizer.learning_rate",
    "a number > 0",
    "got 0.0",
    "the walkthrough uses 0.001",
)
_toml_case(
    "config/learning-rate-negative",
    "[optimizer]\nlearning_rate = -1e-3\n",
    "optimizer.learning_rate",
    "a number > 0",
    "got -0.001",
    "the walkthrough uses 0.001",
)
_toml_case(
    "config/layer-size-not-a-multiple-of-its-group",
    _PDH + "z_dims = [360, 350, 360]\n",
    "model.z_dims[1]",
    "a multiple of n_group=12",
    "got 350",
    "change the layer size or the group size",
)
_toml_case(
    "config/no-latent-layers",
    _PDH + "z_dims = []\n",
    "model.z_dims",
    "a non-empty list",
    "got []",
    "latent layer sizes from z1",
)
_toml_case(
    "config/x_dim-does-not-match-the-dataset",
    _PDH + "x_dim = 100\n",
    "model.x_dim",
    "784 for dataset 'mnist'",
    "got 100",
    "28 x 28",
)
_toml_case(
    "config/toml-syntax-error",
    "[model]\nkind = gncn_pdh\n",
    "cfg.toml, line 2",
    "TOML syntax error",
    "Invalid value",
    "strings need quotes",
)
_toml_case(
    "config/legacy-unknown-key",
    "bach_size = 64\n",
    "'bach_size'",
    "did you mean",
    "unknown key",
    "'batch_size'",
    "fit.cfg, line 1",
    legacy=True,
)
_toml_case(
    "config/legacy-not-a-number",
    "K = fifty\n",
    "K (model.K)",
    "an integer in [1, 100000]",
    "got 'fifty'",
    "the museum uses 50",
    "line 1",
    legacy=True,
)
_toml_case(
    "config/legacy-unknown-model-type",
    "model_type = GNCN_PDX\n",
    "model_type (model.kind)",
    "one of GNCN_t1",
    "got 'GNCN_PDX'",
    "did you mean 'GNCN_PDH'",
    legacy=True,
)


@case("config/file-missing", ConfigError, "nowhere.toml", "config file not found", "nowhere.toml", "check the path")
def _(tmp, small):
    load_config(tmp / "nowhere.toml")


# --- arrays handed to the API --------------------------------------------------------------------


@case(
    "array/settle-x-wrong-width", ValueError, "x", "expected shape (batch, 16)", "got shape (4, 15)", "one image a row"
)
def _(tmp, small):
    model, params = small
    model.settle(params, _x(4, 15))


@case("array/settle-x-uint8-pixels", ValueError, "x", "expected a floating-point array", "got dtype uint8", "to_float")
def _(tmp, small):
    model, params = small
    model.settle(params, (_x() * 255).astype(np.uint8))


@case(
    "array/settle-x-nan",
    ValueError,
    "x",
    "expected finite values",
    "got 1 NaN and 0 infinite",
    "Remove or replace",
    "index (2, 5)",
)
def _(tmp, small):
    model, params = small
    x = _x()
    x[2, 5] = np.nan
    model.settle(params, x)


@case(
    "array/settle-x-inf-as-jax-array",
    ValueError,
    "x",
    "expected finite values",
    "got 0 NaN and 1 infinite",
    "Remove or replace",
)
def _(tmp, small):
    model, params = small
    model.settle(params, jnp.asarray(_x()).at[0, 0].set(jnp.inf))


@case(
    "array/bernoulli-output-x-outside-0-1",
    ValueError,
    "x",
    "expected values in [0.0, 1.0]",
    "got values from 0 to 255",
    "Scale images to [0, 1]",
    "Bernoulli",
)
def _(tmp, small):
    model, params = small
    model.settle(params, _x() * 255)


@case("array/mask-wrong-shape", ValueError, "mask", "expected shape (4, 16)", "got shape (4, 8)", "1 keeps a pixel")
def _(tmp, small):
    model, params = small
    model.settle(params, _x(), mask=np.ones((4, 8), np.float32))  # x is (4, 16)


@case("array/params-missing-array", ValueError, "params", "missing ['W2']", "got ['E1'", "init(key)")
def _(tmp, small):
    model, params = small
    model.settle({k: v for k, v in params.items() if k != "W2"}, _x())


@case(
    "array/params-wrong-shape",
    ValueError,
    "params['W1']",
    "expected shape (12, 16)",
    "got shape (12, 784)",
    "same architecture",
)
def _(tmp, small):
    model, params = small
    model.settle({**params, "W1": np.zeros((12, 784), np.float32)}, _x())


@case(
    "array/params-nan",
    ValueError,
    "params['Sigma1']",
    "expected finite values",
    "1 NaN",
    "reload the last good checkpoint",
)
def _(tmp, small):
    model, params = small
    sigma = params["Sigma1"].copy()
    sigma[0, 1] = np.nan
    model.settle({**params, "Sigma1": sigma}, _x())


@case(
    "array/trainer-step-x-outside-0-1",
    ValueError,
    "x",
    "expected values in [0.0, 1.0]",
    "got values from",
    "Scale images to [0, 1]",
)
def _(tmp, small):
    model, params = small
    trainer = make_trainer(model)
    xb, w = pad_batch(jnp.asarray(_x() * 2 - 1), 8)
    trainer.step(params, trainer.init(params), xb, w)


@case(
    "array/trainer-step-weights-wrong-shape",
    ValueError,
    "weights",
    "expected shape (8,)",
    "got shape (4,)",
    "pad_batch",
)
def _(tmp, small):
    model, params = small
    trainer = make_trainer(model)
    xb, _ = pad_batch(jnp.asarray(_x()), 8)
    trainer.step(params, trainer.init(params), xb, jnp.ones(4))


@case("array/trainer-evaluate-x-nan", ValueError, "x", "expected finite values", "1 NaN", "Remove or replace")
def _(tmp, small):
    model, params = small
    trainer = make_trainer(model)
    x = _x()
    x[0, 0] = np.nan
    trainer.evaluate(params, *pad_batch(jnp.asarray(x), 4))


@case(
    "array/train-x_train-wrong-width",
    ValueError,
    "x_train",
    "expected shape (batch, 16)",
    "got shape (20, 784)",
    "one image a row",
)
def _(tmp, small):
    model, _ = small
    train(model, _x(20, 784), _x(4), epochs=1, batch_size=8)


@case("array/train-x_val-nan", ValueError, "x_val", "expected finite values", "1 NaN", "Remove or replace")
def _(tmp, small):
    model, _ = small
    x_val = _x()
    x_val[1, 1] = np.nan
    train(model, _x(20), x_val, epochs=1, batch_size=8)


@case("array/train-batch-size-below-1", ValueError, "batch_size", "an integer in [1, 1048576]", "got 0", "batch_size")
def _(tmp, small):
    model, _ = small
    train(model, _x(20), _x(4), epochs=1, batch_size=0)


@case("array/evaluate-x-wrong-dtype", ValueError, "x", "expected a floating-point array", "got dtype int64", "to_float")
def _(tmp, small):
    model, params = small
    evaluate(make_trainer(model), params, _x().astype(np.int64), 4)


@case("array/pad-batch-too-many-rows", ValueError, "x", "at most batch_size=4 rows", "got 6", "batch_size")
def _(tmp, small):
    pad_batch(jnp.asarray(_x(6)), 4)


@case(
    "array/project-z_top-wrong-size",
    ValueError,
    "z_top",
    "expected shape (batch, 18)",
    "got shape (2, 12)",
    "top-layer latent of size 18",
)
def _(tmp, small):
    model, params = small
    model.project(params, jnp.zeros((2, 12)))


@case("array/not-an-array", ValueError, "x", "expected an array", "got str", "one image a row")
def _(tmp, small):
    model, params = small
    model.settle(params, "images.npy")


@case(
    "array/checkpoint-save-nan-weights",
    ValueError,
    "'W1'",
    "expected finite values",
    "got 1 NaN",
    "Keep the last good checkpoint",
    "allow_nonfinite",
)
def _(tmp, small):
    w = np.ones((3, 3), np.float32)
    w[1, 1] = np.nan
    try:
        save_checkpoint(tmp / "best", {"W1": w}, {})
    finally:
        assert list(tmp.iterdir()) == [], "nothing may be written"


@case(
    "array/checkpoint-save-object-array",
    ValueError,
    "'evil'",
    "holds Python objects",
    "dtype object",
    "convert it to a numeric",
)
def _(tmp, small):
    save_checkpoint(tmp / "best", {"evil": np.array([{"a": 1}], dtype=object)}, {})


# --- checkpoints -------------------------------------------------------------------------------


@case(
    "checkpoint/hash-mismatch",
    CheckpointError,
    "best.npz",
    "SHA-256 mismatch. Expected",
    "found",
    "To fix: restore both files",
)
def _(tmp, small):
    stem = _pair(tmp)
    data = bytearray(stem.with_suffix(".npz").read_bytes())
    data[-30] ^= 0xFF
    stem.with_suffix(".npz").write_bytes(bytes(data))
    load_checkpoint(stem)


@case("checkpoint/truncated-npz", CheckpointError, "best.npz", "SHA-256 mismatch. Expected", "bytes)", "To fix")
def _(tmp, small):
    stem = _pair(tmp)
    npz = stem.with_suffix(".npz")
    npz.write_bytes(npz.read_bytes()[:100])
    load_checkpoint(stem)


@case(
    "checkpoint/truncated-npz-hash-rewritten",
    CheckpointError,
    "best.npz",
    "expected an .npz archive",
    "cannot read it",
    "Save the checkpoint again",
)
def _(tmp, small):
    stem = _pair(tmp)
    npz = stem.with_suffix(".npz")
    npz.write_bytes(npz.read_bytes()[:100])
    _edit_json(stem, npz_sha256=hashlib.sha256(npz.read_bytes()).hexdigest())
    load_checkpoint(stem)


@case(
    "checkpoint/array-missing",
    CheckpointError,
    "best.npz",
    "Expected ['W1', 'W2']",
    "missing ['W2']",
    "save the checkpoint again",
)
def _(tmp, small):
    stem = _pair(tmp)
    _rewrite_npz(stem, {"W1": np.ones((3, 3), np.float32)})
    load_checkpoint(stem)


@case(
    "checkpoint/array-wrong-shape",
    CheckpointError,
    "'W1'",
    "expected shape (3, 3)",
    "found shape (2, 2)",
    "save the checkpoint again",
)
def _(tmp, small):
    stem = _pair(tmp)
    _rewrite_npz(stem, {"W1": np.ones((2, 2), np.float32), "W2": np.zeros((2, 3), np.float32)})
    load_checkpoint(stem)


@case(
    "checkpoint/newer-format-version",
    CheckpointError,
    "format_version 3",
    "reads (up to 2)",
    "newer than this predcode",
    "Upgrade predcode",
)
def _(tmp, small):
    stem = _pair(tmp)
    _edit_json(stem, format_version=3)
    load_checkpoint(stem)


@case(
    "checkpoint/npz-with-a-pickled-object",
    CheckpointError,
    "'evil'",
    "a plain numeric or string dtype",
    "a pickled object array",
    "do not trust it",
)
def _(tmp, small):
    stem = _pair(tmp)
    evil = np.empty(1, dtype=object)
    evil[0] = _Marker(str(tmp / "marker"))
    _rewrite_npz(
        stem, {"W1": np.ones((3, 3), np.float32), "W2": np.zeros((2, 3), np.float32), "evil": evil}, allow_pickle=True
    )
    doc = json.loads(stem.with_suffix(".json").read_text())
    doc["arrays"]["evil"] = {"shape": [1], "dtype": "object"}
    stem.with_suffix(".json").write_text(json.dumps(doc))
    try:
        load_checkpoint(stem)
    finally:
        assert not (tmp / "marker").exists(), "the pickle ran"


@case(
    "checkpoint/npz-member-that-is-not-npy",
    CheckpointError,
    "'W1'",
    "expected an .npy array",
    "found bytes",
    "Save the checkpoint again",
)
def _(tmp, small):
    import zipfile

    stem = _pair(tmp)
    with zipfile.ZipFile(stem.with_suffix(".npz"), "w") as z:  # valid zip, CRCs right, but no NPY magic
        z.writestr("W1.npy", b"just some bytes")
        z.writestr("W2.npy", b"more bytes")
    _edit_json(stem, npz_sha256=hashlib.sha256(stem.with_suffix(".npz").read_bytes()).hexdigest())
    load_checkpoint(stem)


@case(
    "checkpoint/npy-header-that-does-not-parse",
    CheckpointError,
    "'W1'",
    "cannot be read",
    "TokenError",
    "Save the checkpoint again",
)
def _(tmp, small):
    import io
    import zipfile

    buf = io.BytesIO()
    np.save(buf, np.ones((3, 3), np.float32))
    npy = buf.getvalue().replace(b"(3, 3), }", b"(3, 3), (", 1)  # an unclosed bracket in the header dict
    stem = _pair(tmp)
    with zipfile.ZipFile(stem.with_suffix(".npz"), "w") as z:
        z.writestr("W1.npy", npy)
        z.writestr("W2.npy", npy)
    _edit_json(stem, npz_sha256=hashlib.sha256(stem.with_suffix(".npz").read_bytes()).hexdigest())
    load_checkpoint(stem)


@case(
    "checkpoint/json-not-json",
    CheckpointError,
    "best.json",
    "expected JSON",
    "parse error",
    "restore it or save the checkpoint again",
)
def _(tmp, small):
    stem = _pair(tmp)
    stem.with_suffix(".json").write_text('{"format": "predcode-checkpoint", ')
    load_checkpoint(stem)


@case(
    "checkpoint/not-a-predcode-checkpoint",
    CheckpointError,
    "best.json",
    'expected "format": "predcode-checkpoint"',
    "found 'something-else'",
    "pass the stem of a pair",
)
def _(tmp, small):
    stem = _pair(tmp)
    _edit_json(stem, format="something-else")
    load_checkpoint(stem)


@case("checkpoint/npz-missing", CheckpointError, "best.npz", "file not found", "describes it", "restore best.npz")
def _(tmp, small):
    stem = _pair(tmp)
    stem.with_suffix(".npz").unlink()
    load_checkpoint(stem)


# --- run folders ---------------------------------------------------------------------------------


@case("run/existing-run-without-force", RunFolderError, "--out", "pass --resume", "already holds a run", "--force")
def _(tmp, small):
    cfg = load_config(_data_cfg(tmp))
    (tmp / "run").mkdir()
    (tmp / "run" / "config.toml").write_text("# an earlier run\n")
    fit(cfg, tmp / "run")


@case(
    "run/out-is-a-file",
    RunFolderError,
    "--out",
    "expected a folder for the run",
    "got the existing file",
    "choose another --out",
)
def _(tmp, small):
    cfg = load_config(_data_cfg(tmp))
    (tmp / "run").write_text("not a folder")
    fit(cfg, tmp / "run")


@case(
    "run/leftover-run-files-without-config",
    RunFolderError,
    "--out",
    "pass --force",
    "best0.json",
    "choose another --out",
    "holds files of an earlier run",
)
def _(tmp, small):
    cfg = load_config(_data_cfg(tmp))
    _pair(tmp / "run")
    (tmp / "run" / "best.json").rename(tmp / "run" / "best0.json")
    fit(cfg, tmp / "run")


@case("run/resume-without-a-run", RunFolderError, "--resume", "no run to resume", "no config.toml", "drop --resume")
def _(tmp, small):
    fit(load_config(_data_cfg(tmp)), tmp / "empty", resume=True)


@case(
    "run/resume-with-another-architecture",
    RunFolderError,
    "--resume",
    "expected shape (12, 16)",
    "got shape (24, 16)",
    "resume with the run's own config.toml",
)
def _(tmp, small):
    cfg = load_config(_data_cfg(tmp))
    other = GNCN(GNCNConfig(kind="gncn_pdh", x_dim=16, z_dims=(24, 24, 36), K=3))
    params = _params(other)
    run = tmp / "run"
    run.mkdir()
    (run / "config.toml").write_text(dump_toml(cfg))  # the run's config agrees; its checkpoints do not
    meta = {"kind": "gncn_pdh", "epoch": 1, "best_epoch": 1, "best_val_bce": 1.0}
    save_checkpoint(run / "state0", {"params": params}, meta)
    save_checkpoint(run / "best0", {"params": params}, meta)
    fit(cfg, run, resume=True)


# ------------------------------------------------------------------------------------------ tests

_NEEDS_ENV = {
    "download/local-copy-checksum-mismatch": {},
    "download/wrong-bytes-from-every-mirror": {},
    "download/interrupted-transfer": {},
    "download/offline-and-missing": {"offline": True},
}


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_raises_its_documented_error_naming_parameter_expected_got_and_fix(c, tmp_path, small, monkeypatch):
    if c.id in _NEEDS_ENV:
        _dataset_env(tmp_path, monkeypatch, _DOWNLOAD_FETCH.get(c.id), **_NEEDS_ENV[c.id])
    with pytest.raises(BaseException) as info:
        c.run(tmp_path, small)
    assert type(info.value) is c.error, f"expected {c.error.__name__}, got {type(info.value).__name__}: {info.value}"
    message = str(info.value)
    for role, fragment in (
        ("parameter", c.param),
        ("expected", c.expected),
        ("got", c.got),
        ("fix", c.fix),
        *(("detail", e) for e in c.extra),
    ):
        assert fragment in message, f"the message should give the {role} ({fragment!r}); it is:\n{message}"
    assert "Traceback" not in message and message.count("\n") <= 10, "one clear message, not a dump"


def test_the_catalogue_covers_every_kind_of_input_with_at_least_40_cases():
    kinds = {c.id.split("/")[0] for c in CASES}
    assert kinds >= {"idx", "download", "data", "config", "array", "checkpoint", "run"}
    assert len(CASES) + len(CLI_CASES) >= 40


# --------------------------------------------------------------------------- the command line

runner = CliRunner()


def _cli_cfg(tmp: Path) -> str:
    return str(_data_cfg(tmp))


# (id, args(tmp) -> list, exit code, fragments of the one error message)
CLI_CASES = [
    (
        "fit/config-missing",
        lambda t: ["fit", "--config", str(t / "none.toml")],
        2,
        ["config file not found", "none.toml", "check the path"],
    ),
    (
        "fit/config-out-of-range",
        lambda t: ["fit", "--config", str(_toml(t, "[model]\nK = 0\n"))],
        2,
        ["model.K", "expected an integer in [1, 100000]", "got 0"],
    ),
    (
        "fit/config-unknown-key",
        lambda t: ["fit", "--config", str(_toml(t, "[train]\nepoch = 3\n"))],
        2,
        ["train.epoch", "did you mean 'train.epochs'"],
    ),
    (
        "fit/n-trials-zero",
        lambda t: ["fit", "--config", _cli_cfg(t), "--n-trials", "0"],
        2,
        ["--n-trials", "expected an integer in [1, 10000], got 0"],
    ),
    (
        "fit/n-trials-not-a-number",
        lambda t: ["fit", "--config", _cli_cfg(t), "--n-trials", "three"],
        2,
        ["--n-trials", "valid integer"],
    ),
    (
        "fit/unknown-option",
        lambda t: ["fit", "--config", _cli_cfg(t), "--epochs", "3"],
        2,
        ["No such option", "--epochs"],
    ),
    (
        "fit/out-is-a-file",
        lambda t: ["fit", "--config", _cli_cfg(t), "--out", str(_file(t))],
        2,
        ["--out", "expected a folder", "choose another --out"],
    ),
    (
        "fit/existing-run",
        lambda t: ["fit", "--config", _cli_cfg(t), "--out", str(_existing_run(t))],
        2,
        ["already holds a run", "--resume", "--force"],
    ),
    (
        "fit/resume-nothing",
        lambda t: ["fit", "--config", _cli_cfg(t), "--out", str(t / "new"), "--resume"],
        2,
        ["--resume", "no run to resume", "drop --resume"],
    ),
    (
        "fit/corrupt-dataset-file",
        lambda t: ["fit", "--config", str(_mnist_cfg(t)), "--out", str(t / "r")],
        1,
        ["sha256 mismatch", "train-images-idx3-ubyte.gz", "Delete it"],
    ),
    (
        "fit/credit-mlp-unknown-rule",
        lambda t: ["fit", "--config", str(_toml(t, '[model]\nfamily = "mlp"\nrule = "sgd"\n')), "--out", str(t / "r")],
        2,
        ["line 3", "model.rule", "expected one of 'backprop', 'fa', 'dfa', 'pc'", "got 'sgd'"],
    ),
    (
        "fit/credit-mlp-patience-0",
        lambda t: ["fit", "--config", "credit/mnist_fa", "--out", str(t / "r"), "--set", "train.patience=0"],
        2,
        ["train.patience", "expected an integer in [1, 1000000]", "got 0"],
    ),
    (
        "credit/mnist-unknown-rule",
        lambda t: ["credit", "mnist", "--rules", "fa,sgd", "--out", str(t / "o")],
        2,
        ["--rules", "invalid choice: 'sgd'", "choose from 'backprop', 'fa', 'dfa', 'pc'"],
    ),
    (
        "credit/mnist-set-without-config",
        lambda t: ["credit", "mnist", "--set", "model.rule=fa", "--out", str(t / "o")],
        2,
        ["--set", "needs --config"],
    ),
    (
        "credit/mnist-corrupt-dataset-file",
        lambda t: [
            "credit",
            "mnist",
            "--rules",
            "fa",
            "--out",
            str(_mnist_cfg(t).parent / "o"),
            "--checkpoints",
            str(t / "ck"),
        ],
        1,
        ["sha256 mismatch", "train-images-idx3-ubyte.gz", "Delete it"],
    ),
    (
        "credit/report-without-results",
        lambda t: ["credit", "report", "--folder", str(t), "--out", str(t / "r")],
        1,
        ["folder", "no per-rule results", "backprop.json"],
    ),
    (
        "credit/online-seconds-zero",
        lambda t: ["credit", "online", "--seconds", "0", "--out", str(t / "o.png")],
        2,
        ["--seconds", "expected a finite number > 0, got 0.0"],
    ),
    (
        "demo/unknown-model-kind",
        lambda t: ["demo", "--kind", "gncn_t3", "--out", str(t / "d")],
        2,
        ["--kind", "expected one of gncn_t1", "got 'gncn_t3'"],
    ),
    (
        "demo/epochs-zero",
        lambda t: ["demo", "--epochs", "0", "--out", str(t / "d")],
        2,
        ["--epochs", "expected an integer in [1, 1000000], got 0"],
    ),
    (
        "analyze/run-not-a-folder",
        lambda t: ["analyze", "--run", str(t / "missing")],
        2,
        ["--run", "is not a folder", "pass a run folder"],
    ),
    (
        "analyze/folder-without-a-run",
        lambda t: ["analyze", "--run", str(t)],
        2,
        ["--run", "holds no config.toml", "predcode fit --out"],
    ),
    (
        "sample/damaged-checkpoint",
        lambda t: ["sample", "--run", str(_damaged_run(t))],
        1,
        ["best0.npz", "SHA-256 mismatch", "To fix"],
    ),
    (
        "sample/n-zero",
        lambda t: ["sample", "--run", str(_good_run(t)), "-n", "0"],
        2,
        ["-n", "expected an integer", "got 0"],
    ),
    (
        "analyze/trial-without-a-best-model",
        lambda t: ["analyze", "--run", str(_good_run(t)), "--trial", "3"],
        2,
        ["--trial", "holds no best3 checkpoint", "pass one of them to --trial"],
    ),
    (
        "sample/damaged-prior",
        lambda t: ["sample", "--run", str(_good_run(t, prior=b"PK\x03\x04junk"))],
        1,
        ["prior.npz", "cannot read it", "run `predcode analyze` again"],
    ),
    (
        "fit/settling-diverges",
        lambda t: ["fit", "--config", str(_diverging_cfg(t)), "--out", str(t / "r"), "--quiet"],
        1,
        ["settling diverged while evaluating x_val", "non-finite states in layer(s) z1", "Lower the settling step"],
    ),
    (
        "fit/settling-diverges-in-vmapped-trials",
        lambda t: ["fit", "--config", str(_diverging_cfg(t)), "--out", str(t / "r"), "--quiet", "--n-trials", "2"],
        1,
        ["settling diverged in trial 0 while evaluating x_val", "non-finite states in layer(s) z1"],
    ),
]


def _diverging_cfg(tmp: Path) -> Path:
    np.save(tmp / "x.npy", np.ones((20, 16), np.float32))
    return _toml(
        tmp,
        '[model]\nkind = "gncn_t1"\nx_dim = 16\nz_dims = [8, 8]\nK = 40\nbeta = 200.0\n'
        'phi = "identity"\n[data]\ntrain_file = "x.npy"\nn_val = 4\n[train]\nepochs = 1\n'
        "batch_size = 8\n",
    )


def _good_run(tmp: Path, prior: bytes | None = None) -> Path:
    run = _damaged_run(tmp, damage=False)
    if prior is not None:
        (run / "analysis0").mkdir()
        (run / "analysis0" / "prior.npz").write_bytes(prior)
    return run


def _damaged_run(tmp: Path, damage: bool = True) -> Path:
    from predcode.experiments.config import dump_toml

    run = tmp / "run"
    run.mkdir()
    (run / "config.toml").write_text(dump_toml(load_config(_data_cfg(tmp))))
    model = GNCN(SMALL)
    _pair(run, {"params": _params(model)})
    for suffix in (".npz", ".json"):
        (run / f"best{suffix}").rename(run / f"best0{suffix}")
    if damage:
        data = bytearray((run / "best0.npz").read_bytes())
        data[-40] ^= 0xFF
        (run / "best0.npz").write_bytes(bytes(data))
    return run


def _file(tmp: Path) -> Path:
    (tmp / "a_file").write_text("not a folder")
    return tmp / "a_file"


def _existing_run(tmp: Path) -> Path:
    (tmp / "run").mkdir(exist_ok=True)
    (tmp / "run" / "config.toml").write_text("# earlier\n")
    return tmp / "run"


def _mnist_cfg(tmp: Path) -> Path:
    (tmp / "data" / "mnist").mkdir(parents=True)
    (tmp / "data" / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"damaged"))
    return _toml(tmp, "[train]\nepochs = 1\n")


@pytest.mark.parametrize(
    "cid, args, code, fragments", CLI_CASES, ids=[c[0] if isinstance(c, tuple) else c.id for c in CLI_CASES]
)
def test_cli_bad_value_exits_with_its_code_and_one_message_without_traceback(
    cid, args, code, fragments, tmp_path, monkeypatch
):
    monkeypatch.setenv("PREDCODE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PREDCODE_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, args(tmp_path))
    output = " ".join(result.output.split())  # rich wraps usage errors in a box
    assert result.exit_code == code, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} missing from:\n{result.output}"


# ------------------------------------------------------------------ no code execution from files

_SRC = Path(__file__).resolve().parents[1] / "src" / "predcode"


def test_no_loader_in_predcode_can_unpickle_or_execute_file_contents():
    """Every np.load passes allow_pickle=False; nothing imports pickle/joblib/torch or calls eval/exec."""
    import re

    offenders = []
    for path in sorted(_SRC.rglob("*.py")):
        text = path.read_text()
        for m in re.finditer(r"np\.load\((.*)", text):
            if "allow_pickle=False" not in m[1]:
                offenders.append(f"{path.name}: {m[0]}")
        for bad in (
            r"^\s*import (c?pickle|joblib|dill|shelve|marshal)\b",
            r"^\s*from (c?pickle|joblib|dill) ",
            r"\btorch\.load\(",
            r"(?<![\w.])(eval|exec)\(",
            r"allow_pickle=True",
        ):
            offenders += [f"{path.name}: {hit.group(0).strip()}" for hit in re.finditer(bad, text, re.M)]
    assert offenders == [], offenders
