"""Checkpoint format: round trip, integrity checks, refusal of pickles, crash safety of saves."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

import predcode
from predcode.experiments.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    checkpoint_paths,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.standard_normal((5, 12)).astype(np.float32),
        "W2": rng.standard_normal((4, 5)).astype(np.float32),
        "Sigma_e1": np.eye(5, dtype=np.float32) + 0.01,
        "counts": np.arange(7, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "step": np.array(3.5, dtype=np.float64),  # 0-d
        "empty": np.zeros((0, 3), dtype=np.float32),
        "theta_order": np.array(["W3", "W2", "W1"]),  # unicode arrays need no pickle
    }


_META = {
    "model": "gncn_pdh",
    "x_dim": 12,
    "z_dims": [5, 4, 6],
    "activations": {"phi": "relu", "g_hidden": "relu", "g_out": "sigmoid"},
    "beta": np.float32(0.1),  # NumPy scalars are accepted and written as JSON numbers
    "K": np.int64(50),
    "lmbda": None,
}


def _edit_json(json_path: Path, edit) -> None:
    doc = json.loads(json_path.read_text())
    edit(doc)
    json_path.write_text(json.dumps(doc))


def _assert_only_pair(folder: Path, name: str = "best") -> None:
    assert sorted(p.name for p in folder.iterdir()) == [f"{name}.json", f"{name}.npz"]


# ------------------------------------------------------------------------------------- round trip


def test_round_trip_preserves_values_dtypes_and_metadata(tmp_path):
    arrays = _arrays()
    npz_path, json_path = save_checkpoint(tmp_path / "run" / "best", arrays, _META)
    assert (npz_path, json_path) == (tmp_path / "run" / "best.npz", tmp_path / "run" / "best.json")

    loaded, meta = load_checkpoint(tmp_path / "run" / "best")
    assert sorted(loaded) == sorted(arrays)
    for name, a in arrays.items():
        assert loaded[name].dtype == a.dtype, name
        assert loaded[name].shape == a.shape, name
        np.testing.assert_array_equal(loaded[name], a)

    assert meta["model"] == "gncn_pdh"
    assert meta["z_dims"] == [5, 4, 6]
    assert meta["activations"] == _META["activations"]
    assert meta["beta"] == pytest.approx(0.1) and meta["K"] == 50 and meta["lmbda"] is None
    assert meta["format"] == "predcode-checkpoint"
    assert meta["format_version"] == FORMAT_VERSION == 2
    assert meta["predcode_version"] == predcode.__version__
    assert meta["npz_sha256"] == hashlib.sha256(npz_path.read_bytes()).hexdigest()
    assert meta["arrays"]["W1"] == {"shape": [5, 12], "dtype": "float32"}
    assert meta["arrays"]["step"] == {"shape": [], "dtype": "float64"}
    created = dt.datetime.fromisoformat(meta["created"])
    assert created.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 120
    assert verify_checkpoint(tmp_path / "run" / "best") == meta


def test_npz_is_an_uncompressed_pickle_free_archive_readable_by_plain_numpy(tmp_path):
    npz_path, _ = save_checkpoint(tmp_path / "best", _arrays(), _META)
    with zipfile.ZipFile(npz_path) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
        assert sorted(z.namelist()) == sorted(f"{n}.npy" for n in _arrays())
    with np.load(npz_path, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["W1"], _arrays()["W1"])


def test_npz_and_json_suffixes_are_stripped_from_the_stem(tmp_path):
    assert checkpoint_paths(tmp_path / "best.npz") == (tmp_path / "best.npz", tmp_path / "best.json")
    assert checkpoint_paths(tmp_path / "best.v2") == (tmp_path / "best.v2.npz", tmp_path / "best.v2.json")
    save_checkpoint(str(tmp_path / "best.npz"), _arrays(), _META)
    _assert_only_pair(tmp_path)
    arrays, _ = load_checkpoint(tmp_path / "best.json")
    np.testing.assert_array_equal(arrays["W2"], _arrays()["W2"])


def test_loaded_metadata_can_be_saved_again_and_managed_fields_are_rewritten(tmp_path):
    save_checkpoint(tmp_path / "a", _arrays(0), _META)
    _, meta = load_checkpoint(tmp_path / "a")
    new_arrays = _arrays(1)
    save_checkpoint(tmp_path / "b", new_arrays, meta)
    arrays_b, meta_b = load_checkpoint(tmp_path / "b")
    np.testing.assert_array_equal(arrays_b["W1"], new_arrays["W1"])
    assert meta_b["npz_sha256"] == hashlib.sha256((tmp_path / "b.npz").read_bytes()).hexdigest()
    assert meta_b["npz_sha256"] != meta["npz_sha256"]
    assert meta_b["model"] == meta["model"]


def test_save_leaves_no_temporary_files_also_when_overwriting(tmp_path):
    save_checkpoint(tmp_path / "best", _arrays(0), _META)
    _assert_only_pair(tmp_path)
    save_checkpoint(tmp_path / "best", _arrays(1), _META)
    _assert_only_pair(tmp_path)
    arrays, _ = load_checkpoint(tmp_path / "best")
    np.testing.assert_array_equal(arrays["W1"], _arrays(1)["W1"])


# ----------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", ["bad-name", "", "a b", "W1.npy", "../W1", "é", "file", "allow_pickle"])
def test_bad_array_names_are_refused_naming_the_key(tmp_path, bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        save_checkpoint(tmp_path / "best", {"W1": np.zeros(2), bad: np.zeros(2)}, {})
    assert not (tmp_path / "best.npz").exists() and not (tmp_path / "best.json").exists()


def test_non_string_array_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="1"):
        save_checkpoint(tmp_path / "best", {1: np.zeros(2)}, {})


def test_object_arrays_are_refused_at_save(tmp_path):
    with pytest.raises(ValueError, match="'weird'.*object"):
        save_checkpoint(tmp_path / "best", {"weird": np.array([{"a": 1}], dtype=object)}, {})
    assert list(tmp_path.iterdir()) == []


def test_metadata_that_is_not_strict_json_is_refused(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "best", _arrays(), {"beta": float("nan")})
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "best", _arrays(), {"f": object()})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- integrity checks


def test_one_changed_byte_in_the_npz_is_a_hash_mismatch_naming_the_file(tmp_path):
    npz_path, _ = save_checkpoint(tmp_path / "best", _arrays(), _META)
    data = bytearray(npz_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    npz_path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 mismatch") as info:
        load_checkpoint(tmp_path / "best")
    assert str(npz_path) in str(info.value)
    assert "Expected" in str(info.value) and "found" in str(info.value)
    with pytest.raises(CheckpointError):
        verify_checkpoint(tmp_path / "best")


def test_truncated_npz_is_refused(tmp_path):
    npz_path, _ = save_checkpoint(tmp_path / "best", _arrays(), _META)
    npz_path.write_bytes(npz_path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="best.npz"):
        load_checkpoint(tmp_path / "best")


def test_truncated_npz_with_a_matching_hash_is_refused_as_unreadable(tmp_path):
    for cut in (200, -30):  # inside the first member; inside the zip's central directory
        npz_path, json_path = save_checkpoint(tmp_path / "best", _arrays(), _META)
        truncated = npz_path.read_bytes()[:cut]
        npz_path.write_bytes(truncated)
        _edit_json(json_path, lambda d, t=truncated: d.update(npz_sha256=hashlib.sha256(t).hexdigest()))
        with pytest.raises(CheckpointError, match="best.npz.*(cannot read|archive)"):
            load_checkpoint(tmp_path / "best")


def test_array_listed_in_json_but_missing_from_npz_is_refused(tmp_path):
    _, json_path = save_checkpoint(tmp_path / "best", _arrays(), _META)
    _edit_json(json_path, lambda d: d["arrays"].update(E1={"shape": [12, 5], "dtype": "float32"}))
    with pytest.raises(CheckpointError, match=r"missing \['E1'\]"):
        load_checkpoint(tmp_path / "best")


def test_array_in_npz_but_not_listed_in_json_is_refused(tmp_path):
    _, json_path = save_checkpoint(tmp_path / "best", _arrays(), _META)
    _edit_json(json_path, lambda d: d["arrays"].pop("W2"))
    with pytest.raises(CheckpointError, match=r"unexpected \['W2'\]"):
        load_checkpoint(tmp_path / "best")


def test_array_with_a_different_shape_than_recorded_is_refused(tmp_path):
    _, json_path = save_checkpoint(tmp_path / "best", _arrays(), _META)
    _edit_json(json_path, lambda d: d["arrays"]["W1"].update(shape=[12, 5]))
    with pytest.raises(CheckpointError, match=r"'W1' expected shape \(12, 5\).*found shape \(5, 12\)"):
        load_checkpoint(tmp_path / "best")


def test_array_with_a_different_dtype_than_recorded_is_refused(tmp_path):
    _, json_path = save_checkpoint(tmp_path / "best", _arrays(), _META)
    _edit_json(json_path, lambda d: d["arrays"]["W1"].update(dtype="float64"))
    with pytest.raises(CheckpointError, match="'W1'.*dtype float64.*found.*dtype float32"):
        load_checkpoint(tmp_path / "best")


def test_newer_format_version_asks_to_upgrade(tmp_path):
    _, json_path = save_checkpoint(tmp_path / "best", _arrays(), _META)
    _edit_json(json_path, lambda d: d.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="(?i)newer.*upgrade") as info:
        load_checkpoint(tmp_path / "best")
    assert str(json_path) in str(info.value)


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda d: d.update(format="something-else"), "format"),
        (lambda d: d.pop("format"), "format"),
        (lambda d: d.update(format_version="1"), "format_version"),
        (lambda d: d.update(format_version=0), "format_version"),
        (lambda d: d.pop("npz_sha256"), "npz_sha256"),
        (lambda d: d.update(arrays=[]), "arrays"),
        (lambda d: d["arrays"].update(W1={"shape": "5x12", "dtype": "float32"}), "'W1'"),
    ],
)
def test_damaged_json_fields_are_refused(tmp_path, edit, pattern):
    _, json_path = save_checkpoint(tmp_path / "best", _arrays(), _META)
    _edit_json(json_path, edit)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(tmp_path / "best")
    assert str(json_path) in str(info.value)


def test_unparsable_json_is_refused(tmp_path):
    _, json_path = save_checkpoint(tmp_path / "best", _arrays(), _META)
    json_path.write_text(json_path.read_text()[:40])
    with pytest.raises(CheckpointError, match="best.json.*JSON"):
        load_checkpoint(tmp_path / "best")


def test_missing_files_are_reported_as_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="best.json.*not found"):
        load_checkpoint(tmp_path / "best")
    npz_path, _ = save_checkpoint(tmp_path / "best", _arrays(), _META)
    npz_path.unlink()
    with pytest.raises(CheckpointError, match="best.npz.*not found"):
        load_checkpoint(tmp_path / "best")


# ------------------------------------------------------------------------------- pickle refusal


class _OpensAFile:
    """Unpickling this object calls open(path, 'w'), which creates a marker file."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _craft_pickled_npz(npz_path: Path, marker: Path) -> None:
    evil = np.empty(1, dtype=object)
    evil[0] = _OpensAFile(str(marker))
    np.savez(npz_path, W1=np.zeros((2, 2), np.float32), evil=evil, allow_pickle=True)


def test_npz_with_a_pickled_object_array_is_refused_without_unpickling(tmp_path):
    # First show the crafted archive really is dangerous when unpickled.
    probe_marker = tmp_path / "probe_marker"
    _craft_pickled_npz(tmp_path / "probe.npz", probe_marker)
    with np.load(tmp_path / "probe.npz", allow_pickle=True) as f:
        f["evil"][0].close()
    assert probe_marker.exists()

    marker = tmp_path / "marker"
    npz_path = tmp_path / "best.npz"
    _craft_pickled_npz(npz_path, marker)
    doc = {
        "format": "predcode-checkpoint",
        "format_version": 1,
        "npz_sha256": hashlib.sha256(npz_path.read_bytes()).hexdigest(),
        "arrays": {
            "W1": {"shape": [2, 2], "dtype": "float32"},
            "evil": {"shape": [1], "dtype": "object"},
        },
    }
    (tmp_path / "best.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="'evil'.*pickled object array") as info:
        load_checkpoint(tmp_path / "best")
    assert str(npz_path) in str(info.value)
    with pytest.raises(CheckpointError):
        verify_checkpoint(tmp_path / "best")
    assert not marker.exists()


def test_bare_pickle_in_place_of_the_npz_is_refused_without_unpickling(tmp_path):
    import pickle

    marker = tmp_path / "marker"
    npz_path = tmp_path / "best.npz"
    npz_path.write_bytes(pickle.dumps(_OpensAFile(str(marker))))
    doc = {
        "format": "predcode-checkpoint",
        "format_version": 1,
        "npz_sha256": hashlib.sha256(npz_path.read_bytes()).hexdigest(),
        "arrays": {},
    }
    (tmp_path / "best.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="best.npz"):
        load_checkpoint(tmp_path / "best")
    assert not marker.exists()


# --------------------------------------------------------------------------- interrupted saves


def _assert_old_checkpoint_intact(tmp_path: Path) -> None:
    arrays, meta = load_checkpoint(tmp_path / "best")
    np.testing.assert_array_equal(arrays["W1"], _arrays(0)["W1"])
    assert meta["model"] == "old"
    verify_checkpoint(tmp_path / "best")
    _assert_only_pair(tmp_path)


def test_failure_while_writing_the_new_npz_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "best", _arrays(0), {"model": "old"})

    def failing_savez(file, *args, **kwargs):
        file.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "best", _arrays(1), {"model": "new"})
    monkeypatch.undo()
    _assert_old_checkpoint_intact(tmp_path)


@pytest.mark.parametrize("failing_target", ["best.npz", "best.json"])
def test_failure_while_replacing_either_file_keeps_the_old_checkpoint(tmp_path, monkeypatch, failing_target):
    save_checkpoint(tmp_path / "best", _arrays(0), {"model": "old"})
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(Path(dst).name)
        if Path(dst).name == failing_target:
            raise OSError(f"simulated failure replacing {failing_target}")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated failure"):
        save_checkpoint(tmp_path / "best", _arrays(1), {"model": "new"})
    monkeypatch.undo()
    if failing_target == "best.json":
        assert calls[0] == "best.npz"  # the npz had already been replaced: the save rolled it back
    _assert_old_checkpoint_intact(tmp_path)


def test_failed_first_save_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(dst).name == "best.json":
            raise OSError("simulated failure")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "best", _arrays(1), {"model": "new"})
    assert list(tmp_path.iterdir()) == []


_CRASH_BETWEEN_REPLACES = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from predcode.experiments.checkpoint import save_checkpoint
    real_replace = os.replace
    def crash(src, dst):
        if str(dst).endswith("best.json"):
            os._exit(3)  # a hard crash: no exception handler, no cleanup runs
        return real_replace(src, dst)
    os.replace = crash
    save_checkpoint(sys.argv[1], {"W1": np.full((5, 12), 7.0, np.float32)}, {"model": "new"})
    """
)


def test_hard_crash_between_the_two_replaces_loads_the_previous_pair_and_keeps_the_new_recoverable(tmp_path):
    save_checkpoint(tmp_path / "best", _arrays(0), {"model": "old"})
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH_BETWEEN_REPLACES, str(tmp_path / "best")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3, proc.stderr

    # The json is the commit point: the unfinished save never happened, the old pair loads.
    with pytest.warns(RuntimeWarning, match="best.npz.prev"):
        arrays, meta = load_checkpoint(tmp_path / "best")
    assert meta["model"] == "old"
    np.testing.assert_array_equal(arrays["W1"], _arrays(0)["W1"])

    # Without the kept copy the mismatch is an error that points at the pending json.
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    pending_json = next(n for n in leftovers if n.startswith("best.json.tmp-"))
    (tmp_path / "best.npz.prev").rename(tmp_path / "kept_old.npz")
    with pytest.raises(CheckpointError, match="SHA-256 mismatch") as info:
        load_checkpoint(tmp_path / "best")
    assert pending_json in str(info.value)
    (tmp_path / "kept_old.npz").rename(tmp_path / "best.npz.prev")

    # The next save restores the old npz first, then writes the new pair, and tidies the folder.
    save_checkpoint(tmp_path / "best", _arrays(1), {"model": "newer"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", "best.npz"]
    arrays, meta = load_checkpoint(tmp_path / "best")
    assert meta["model"] == "newer"


def test_save_after_a_crash_between_the_replaces_restores_the_old_npz_before_writing(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "best", _arrays(0), {"model": "old"})
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH_BETWEEN_REPLACES, str(tmp_path / "best")], capture_output=True, text=True
    )
    assert proc.returncode == 3, proc.stderr
    # This save fails before its own swap: the folder must hold the consistent old pair again.
    monkeypatch.setattr(np, "savez", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "best", _arrays(1), {"model": "newer"})
    _assert_old_checkpoint_intact(tmp_path)


def test_both_temporary_files_are_fsynced_before_anything_is_replaced(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda s, d: (events.append("replace " + Path(d).name), real_replace(s, d))[1])
    save_checkpoint(tmp_path / "best", _arrays(), _META)
    first_replace = events.index("replace best.npz")
    assert events[:first_replace].count("fsync") >= 2
    assert events.index("replace best.json") > first_replace


# ------------------------------------------------------------------ the documented NumPy example

_DOC = Path(__file__).resolve().parents[1] / "docs" / "checkpoint-format.md"
_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "legacy-fixtures"
_LEGACY_TO_PREDCODE = {
    "S2": "M2",
    "S3": "M3",
    "Sigma_e1": "Sigma1",
    "Sigma_e2": "Sigma2",
    "Prec_e1": "Prec1",
    "Prec_e2": "Prec2",
}


@pytest.mark.parametrize(
    "model, phi, g_hidden",
    [("gncn_t1", "tanh", "identity"), ("gncn_t1_sigma", "relu", "identity"), ("gncn_pdh", "relu", "relu")],
)
def test_documented_numpy_example_reproduces_legacy_projection(tmp_path, monkeypatch, model, phi, g_hidden):
    fixture = _FIXTURES / f"{model}.npz"
    if not fixture.exists():
        pytest.skip(f"legacy fixture {fixture} not available")
    with np.load(fixture, allow_pickle=False) as f:
        legacy = {k: f[k] for k in f.files}
    arrays = {_LEGACY_TO_PREDCODE.get(k[7:], k[7:]): v for k, v in legacy.items() if k.startswith("param0_")}
    meta = {"model": model, "x_dim": 784, "z_dims": [24, 24, 36], "phi": phi, "g_hidden": g_hidden, "g_out": "sigmoid"}
    monkeypatch.chdir(tmp_path)
    save_checkpoint("run/best", {"params": arrays}, meta)  # as predcode fit writes it
    namespace = _run_documented_example()
    assert namespace["x"].shape == (16, 784)
    np.testing.assert_allclose(namespace["project"](legacy["z_sample"]), legacy["proj0_x"], atol=1e-6)


def _run_documented_example() -> dict:
    example = re.search(r"### Example.*?```python\n(.*?)```", _DOC.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(example, namespace)
    return namespace


@pytest.mark.parametrize("kind", ["gncn_t1", "gncn_t1_sigma", "gncn_t2_lsigma", "gncn_pdh"])
def test_gncn_checkpoint_has_the_documented_arrays_and_the_example_matches_gncn_project(tmp_path, monkeypatch, kind):
    import jax

    from predcode.models.gncn import GNCN, GNCNConfig

    model = GNCN(GNCNConfig(kind=kind, x_dim=30, z_dims=(24, 24, 36)))
    params = model.init(jax.random.PRNGKey(0))
    monkeypatch.chdir(tmp_path)
    save_checkpoint("run/best", {"params": params}, {"model": kind, **model.config.to_dict()})
    arrays, meta = load_checkpoint("run/best")

    documented = {"W1": (24, 30), "W2": (24, 24), "W3": (36, 24)}  # the per-model table
    if kind == "gncn_pdh":
        documented |= {"M2": (24, 30), "M3": (36, 24)}
    if kind in ("gncn_t2_lsigma", "gncn_pdh"):
        documented |= {"E1": (30, 24), "E2": (24, 24), "E3": (24, 36), "V1": (24, 24), "V2": (24, 24), "V3": (36, 36)}
    if kind != "gncn_t1":
        documented |= {n: (24, 24) for n in ("Sigma1", "Sigma2", "Prec1", "Prec2")}
    assert {k: a.shape for k, a in arrays.items()} == {f"params/{k}": s for k, s in documented.items()}
    assert meta["model"] == kind and meta["z_dims"] == [24, 24, 36]
    for key in (
        "x_dim",
        "phi",
        "g_hidden",
        "g_out",
        "K",
        "beta",
        "leak",
        "lmbda",
        "n_group",
        "n_top_group",
        "alpha_scale",
        "beta_scale",
        "wght_sd",
        "sigma_rule",
    ):
        assert key in meta, key

    z_top = np.random.default_rng(1).standard_normal((5, 36)).astype(np.float32)
    expected = np.asarray(model.project(params, z_top))
    np.testing.assert_allclose(_run_documented_example()["project"](z_top), expected, atol=1e-5)
