"""Fuzzing the parsers of outside input: the IDX reader, the checkpoint loader and config files.

Random and mutated inputs must either load correctly or raise the documented error
(``DatasetError``, ``CheckpointError``, ``ConfigError``), never another exception, a hang or a
crash. When a mutated input does load, the result must still be consistent with what the file
declares (shape from the header, arrays as listed in the checkpoint's json). The config parsers'
text fuzzing (both formats) lives in ``tests/test_config.py``; here the file reader is fuzzed with
raw bytes. Examples are derandomized so the suite is reproducible; the counts are in
docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import json
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predcode.data import DatasetError, read_idx_images, read_idx_labels
from predcode.experiments.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from predcode.experiments.config import ConfigError, FitConfig, load_config

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

_WORK = Path(tempfile.mkdtemp(prefix="predcode-fuzz-"))  # one folder, files overwritten per example


@st.composite
def _mutated(draw, base: bytes, max_edits: int = 4) -> bytes:
    """``base`` with a few byte flips, insertions, deletions or a truncation."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[i : i + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[i:]
    return bytes(data)


# ------------------------------------------------------------------------------------------- IDX

_IMAGES = struct.pack(">IIII", 2051, 3, 4, 5) + bytes(range(60))
_LABELS = struct.pack(">II", 2049, 3) + bytes([7, 0, 9])


def _read_idx(raw: bytes, kind: str) -> None:
    path = _WORK / f"fuzz-{kind}.gz"
    path.write_bytes(raw)
    try:
        if kind == "images":
            out = read_idx_images(path, rows=None, cols=None)
        else:
            out = read_idx_labels(path)
    except DatasetError as err:
        assert str(path) in str(err)
        return
    # It loaded: the array must be exactly what the header declares.
    data = gzip.decompress(raw)
    dims = struct.unpack(">III" if kind == "images" else ">I", data[4 : 16 if kind == "images" else 8])
    assert out.shape == dims and out.dtype == np.uint8
    assert out.tobytes() == data[16 if kind == "images" else 8 :]


@FUZZ
@given(st.binary(max_size=200), st.sampled_from(["images", "labels"]))
def test_random_bytes_are_refused_as_dataset_errors(raw, kind):
    _read_idx(raw, kind)


@FUZZ
@given(st.binary(max_size=200), st.sampled_from(["images", "labels"]))
def test_random_gzipped_bytes_load_as_declared_or_are_dataset_errors(raw, kind):
    _read_idx(gzip.compress(raw), kind)


@FUZZ
@given(st.one_of(_mutated(_IMAGES).map(lambda b: ("images", b)), _mutated(_LABELS).map(lambda b: ("labels", b))))
def test_mutated_idx_contents_load_as_declared_or_are_dataset_errors(case):
    kind, raw = case
    _read_idx(gzip.compress(raw), kind)


@FUZZ
@given(_mutated(gzip.compress(_IMAGES), max_edits=3))
def test_mutated_gzip_streams_load_as_declared_or_are_dataset_errors(raw):
    _read_idx(raw, "images")


@functools.cache
def _prior_bytes() -> bytes:
    from predcode.experiments.density import MixturePrior

    rng = np.random.default_rng(0)
    prior = MixturePrior(
        np.array([0.5, 0.5]), rng.standard_normal((2, 3)), np.stack([np.eye(3)] * 2), metadata={"seed": 1}
    )
    return prior.save(_WORK / "prior-base.npz").read_bytes()


# ------------------------------------------------------------------------------------ checkpoints

_ARRAYS = {
    "W1": np.arange(12, dtype=np.float32).reshape(3, 4),
    "b": np.array([1, 2], np.int64),
    "names": np.array(["W1", "b"]),
}
_BASE = _WORK / "base"
save_checkpoint(_BASE, _ARRAYS, {"model": "fuzz", "K": 3})
_NPZ, _JSON = _BASE.with_suffix(".npz").read_bytes(), _BASE.with_suffix(".json").read_text()


def _load(npz: bytes, text: str) -> None:
    stem = _WORK / "ckpt"
    stem.with_suffix(".npz").write_bytes(npz)
    stem.with_suffix(".json").write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        arrays, meta = load_checkpoint(stem)
    except CheckpointError as err:
        assert "ckpt" in str(err)
        return
    # It loaded: every array is exactly as the json lists it, and nothing else came back.
    assert sorted(arrays) == sorted(meta["arrays"])
    for name, spec in meta["arrays"].items():
        assert list(arrays[name].shape) == spec["shape"] and str(arrays[name].dtype) == spec["dtype"]
        assert not arrays[name].dtype.hasobject


def _rehash(text: str, npz: bytes) -> str:
    doc = json.loads(text)
    doc["npz_sha256"] = hashlib.sha256(npz).hexdigest()
    return json.dumps(doc)


@FUZZ
@given(_mutated(_NPZ))
def test_mutated_npz_fails_its_hash(npz):
    _load(npz, _JSON)


@FUZZ
@given(_mutated(_NPZ))
def test_mutated_npz_with_its_hash_recorded_loads_as_listed_or_is_a_checkpoint_error(npz):
    # The hash is re-recorded, so the zip and npy parsers see the damage (as with a crafted file).
    _load(npz, _rehash(_JSON, npz))


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


_W1_NPY = _npy(_ARRAYS["W1"])
_HEADER_END = 10 + struct.unpack("<H", _W1_NPY[8:10])[0]  # magic, version, length, then the dict


@st.composite
def _crafted_npz(draw) -> bytes:
    """An npz whose W1.npy header has a few edits, zipped with correct CRCs: numpy's parser sees them."""
    npy = bytearray(_W1_NPY)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, _HEADER_END - 1))
        npy[i] = draw(st.one_of(st.integers(0, 255), st.sampled_from(b"()[]{},:'\"0123456789 \n<|Ofb")))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("W1.npy", bytes(npy))
        for name in ("b", "names"):
            z.writestr(f"{name}.npy", _npy(_ARRAYS[name]))
    return buf.getvalue()


@FUZZ
@given(_crafted_npz())
def test_damaged_npy_headers_with_their_hash_recorded_are_checkpoint_errors_or_load_as_listed(npz):
    _load(npz, _rehash(_JSON, npz))


_JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2, 2**63), st.floats(), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["format", "format_version", "npz_sha256", "arrays", "model"]), _JSON_VALUES, max_size=5
    )
)
def test_random_json_descriptions_are_checkpoint_errors_or_load_as_listed(changes):
    doc = json.loads(_JSON)
    doc.update(changes)
    _load(_NPZ, json.dumps(doc))


@FUZZ
@given(_mutated(_JSON.encode(), max_edits=3))
def test_mutated_json_text_is_a_checkpoint_error_or_loads_as_listed(raw):
    _load(_NPZ, raw.decode("utf-8", errors="surrogateescape"))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_as_the_npz_with_a_matching_hash_are_checkpoint_errors(npz):
    _load(npz, _rehash(_JSON, npz))


# -------------------------------------------------------------------------- the prior of analyze


@settings(FUZZ)
@given(st.data())
def test_mutated_prior_files_are_prior_file_errors_or_load(data):
    from predcode.experiments.density import MixturePrior, PriorFileError

    raw = data.draw(_mutated(_prior_bytes(), max_edits=3))
    path = _WORK / "prior.npz"
    path.write_bytes(raw)
    with contextlib.suppress(PriorFileError):
        MixturePrior.load(path)


# ---------------------------------------------------------------------------------- config files


@FUZZ
@given(st.binary(max_size=200), st.sampled_from(["c.toml", "fit.cfg"]))
def test_random_bytes_in_a_config_file_give_a_config_or_a_config_error(raw, name):
    path = _WORK / name
    path.write_bytes(raw)
    try:
        cfg = load_config(path)
    except ConfigError as err:
        assert str(err)
    else:
        assert isinstance(cfg, FitConfig)


def test_the_fuzz_base_files_load():
    """The mutations start from valid files (else every example would fail for the same reason)."""
    arrays, _ = load_checkpoint(_BASE)
    assert sorted(arrays) == sorted(_ARRAYS)
    path = _WORK / "valid.gz"
    path.write_bytes(gzip.compress(_IMAGES))
    assert read_idx_images(path, rows=None, cols=None).shape == (3, 4, 5)
    with np.load(io.BytesIO(_NPZ), allow_pickle=False) as f:
        assert sorted(f.files) == sorted(_ARRAYS)
