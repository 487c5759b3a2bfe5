"""Tests for predcode.data: IDX parsing, sha256 checks, search order, downloads, transforms."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
import urllib.error
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from predcode import data
from predcode.data import DatasetError
from predcode.data import datasets as ds

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


def _need(name: str, files: tuple[str, ...]) -> None:
    """Skip unless the verified copies of these files exist in ../shared/data."""
    missing = [f for f in files if not (SHARED / name / f).is_file()]
    if missing:
        pytest.skip(f"verified dataset copy {SHARED / name / missing[0]} not found (offline machines keep them there)")


@contextmanager
def _shared_env(cache: Path):
    """PREDCODE_DATA = the shared copies, cache in ``cache``, downloads disabled."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREDCODE_DATA", str(SHARED))
        mp.setenv("XDG_CACHE_HOME", str(cache))
        mp.setenv("PREDCODE_OFFLINE", "1")
        yield mp


@pytest.fixture
def env(monkeypatch, tmp_path):
    """Isolated environment: no PREDCODE_DATA, cache under tmp_path, downloads allowed, _fetch must not run."""
    monkeypatch.delenv("PREDCODE_DATA", raising=False)
    monkeypatch.delenv("PREDCODE_OFFLINE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    calls: list[str] = []

    def no_fetch(url: str, dest: str) -> None:
        calls.append(url)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(ds, "_fetch", no_fetch)
    return calls


def _cache(tmp_path: Path, name: str = "mnist") -> Path:
    return tmp_path / "xdg" / "predcode" / name


@pytest.fixture(scope="module")
def mnist_train(tmp_path_factory):
    _need("mnist", TRAIN_FILES)
    with _shared_env(tmp_path_factory.mktemp("cache")):
        return data.load("mnist", "train")


@pytest.fixture(scope="module")
def mnist_test(tmp_path_factory):
    _need("mnist", TEST_FILES)
    with _shared_env(tmp_path_factory.mktemp("cache")):
        return data.load("mnist", "test")


# --- real datasets -------------------------------------------------------------------------------


def test_mnist_train(mnist_train):
    x, y = mnist_train
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (60000,) and y.dtype == np.uint8
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_mnist_test(mnist_test):
    x, y = mnist_test
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.uint8
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_mnist_binarized_row_sums(mnist_train):
    rows = data.flatten(data.binarize(mnist_train[0][:8]))
    assert rows.sum(axis=1).tolist() == [111, 125, 81, 66, 91, 113, 67, 143]


def test_load_binarized(mnist_test, tmp_path):
    with _shared_env(tmp_path):
        x, y = data.load_binarized("mnist", "test")
    assert x.shape == (10000, 784) and x.dtype == np.float32
    assert ((x == 0) | (x == 1)).all() and 0 < x.mean() < 1
    assert np.array_equal(x, data.flatten(data.binarize(mnist_test[0])))
    np.testing.assert_array_equal(y, mnist_test[1])


@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_fashion_mnist(split, n, tmp_path):
    _need("fashion-mnist", TRAIN_FILES if split == "train" else TEST_FILES)
    with _shared_env(tmp_path):
        x, y = data.load("fashion-mnist", split)
    assert x.shape == (n, 28, 28) and x.dtype == np.uint8 and y.dtype == np.uint8
    assert np.bincount(y).tolist() == [n // 10] * 10


def test_kmnist_test(tmp_path):
    _need("kmnist", TEST_FILES)
    with _shared_env(tmp_path):
        x, y = data.load("kmnist", "test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and y.shape == (10000,)
    assert np.bincount(y).tolist() == [1000] * 10


def test_kmnist_train_missing_offline_lists_folders(env, tmp_path):
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found")
    with _shared_env(tmp_path / "xdg"), pytest.raises(DatasetError) as e:
        data.load("kmnist", "train")
    msg = str(e.value)
    assert str(SHARED / "kmnist") in msg and str(_cache(tmp_path, "kmnist")) in msg
    assert "train-images-idx3-ubyte.gz" in msg and "PREDCODE_DATA" in msg and "PREDCODE_OFFLINE" in msg
    assert env == []  # no download attempted


# --- sha256 checks and search order --------------------------------------------------------------


def _copy_test_split(dest: Path, name: str = "mnist") -> Path:
    folder = dest / name
    folder.mkdir(parents=True)
    for f in TEST_FILES:
        shutil.copyfile(SHARED / name / f, folder / f)
    return folder


@pytest.mark.parametrize("victim", TEST_FILES)
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_copy_rejected(victim, damage, env, tmp_path, monkeypatch):
    _need("mnist", TEST_FILES)
    folder = _copy_test_split(tmp_path / "data")
    blob = bytearray((folder / victim).read_bytes())
    if damage == "flip":
        blob[len(blob) // 2] ^= 0xFF
    else:
        del blob[len(blob) // 2 :]
    (folder / victim).write_bytes(bytes(blob))
    monkeypatch.setenv("PREDCODE_DATA", str(tmp_path / "data"))
    with pytest.raises(DatasetError) as e:
        data.load("mnist", "test")
    msg = str(e.value)
    assert str(folder / victim) in msg
    assert ds.SHA256["mnist"][victim] in msg and hashlib.sha256(blob).hexdigest() in msg
    assert "Delete" in msg
    assert env == [] and not (tmp_path / "xdg").exists()  # nothing downloaded, nothing cached


def test_damaged_cache_copy_rejected(env, tmp_path):
    _need("mnist", TEST_FILES)
    folder = _copy_test_split(_cache(tmp_path).parent)
    (folder / TEST_FILES[1]).write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="sha256 mismatch") as e:
        data.load("mnist", "test")
    assert str(folder / TEST_FILES[1]) in str(e.value) and env == []


def test_predcode_data_searched_before_cache(env, tmp_path, monkeypatch, mnist_test):
    _copy_test_split(tmp_path / "data")
    bad = _copy_test_split(_cache(tmp_path).parent)
    (bad / TEST_FILES[0]).write_bytes(b"garbage")
    monkeypatch.setenv("PREDCODE_DATA", str(tmp_path / "data"))
    x, y = data.load("mnist", "test")
    np.testing.assert_array_equal(x, mnist_test[0])
    assert data.search_dirs("mnist") == [tmp_path / "data" / "mnist", _cache(tmp_path)]


def test_empty_predcode_data_ignored(env, tmp_path, monkeypatch, mnist_test):
    _copy_test_split(_cache(tmp_path).parent)
    monkeypatch.setenv("PREDCODE_DATA", "")
    assert data.search_dirs("mnist") == [_cache(tmp_path)]
    np.testing.assert_array_equal(data.load("mnist", "test")[1], mnist_test[1])
    assert env == []


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.cache_dir() == tmp_path / ".cache" / "predcode"


# --- downloads (_fetch monkeypatched; this machine has no internet) ------------------------------


def _fake_fetch(calls: list[str], payload):
    """A _fetch that records the url and writes payload(real_bytes) to dest."""

    def fetch(url: str, dest: str) -> None:
        calls.append(url)
        real = (SHARED / "mnist" / url.rsplit("/", 1)[1]).read_bytes()
        Path(dest).write_bytes(payload(real))

    return fetch


def test_download_lands_in_cache(env, tmp_path, monkeypatch, mnist_test):
    calls: list[str] = []
    monkeypatch.setattr(ds, "_fetch", _fake_fetch(calls, lambda real: real))
    x, y = data.load("mnist", "test")
    np.testing.assert_array_equal(x, mnist_test[0])
    np.testing.assert_array_equal(y, mnist_test[1])
    assert calls == [ds.MIRRORS["mnist"][0] + f for f in TEST_FILES]
    assert sorted(p.name for p in _cache(tmp_path).iterdir()) == sorted(TEST_FILES)
    monkeypatch.setattr(ds, "_fetch", _fake_fetch(calls, lambda real: b""))
    data.load("mnist", "test")  # second load comes from the cache
    assert len(calls) == 2


def test_download_falls_back_to_second_mirror(env, tmp_path, monkeypatch, mnist_test):
    calls: list[str] = []
    good = _fake_fetch(calls, lambda real: real)

    def fetch(url: str, dest: str) -> None:
        if url.startswith(ds.MIRRORS["mnist"][0]):
            calls.append(url)
            raise urllib.error.URLError("mirror down")
        good(url, dest)

    monkeypatch.setattr(ds, "_fetch", fetch)
    np.testing.assert_array_equal(data.load("mnist", "test")[1], mnist_test[1])
    assert len(calls) == 4 and calls[1].startswith(ds.MIRRORS["mnist"][1])
    assert sorted(p.name for p in _cache(tmp_path).iterdir()) == sorted(TEST_FILES)


def test_download_wrong_bytes_leaves_nothing(env, tmp_path, monkeypatch):
    _need("mnist", TEST_FILES)
    calls: list[str] = []
    monkeypatch.setattr(ds, "_fetch", _fake_fetch(calls, lambda real: real[:-1] + b"x"))
    with pytest.raises(DatasetError) as e:
        data.load("mnist", "test")
    msg = str(e.value)
    assert "sha256" in msg and all(m in msg for m in ds.MIRRORS["mnist"]) and "PREDCODE_DATA" in msg
    assert len(calls) == 2  # both mirrors tried
    assert list(_cache(tmp_path).iterdir()) == []


def test_interrupted_download_leaves_nothing(env, tmp_path, monkeypatch):
    _need("mnist", TEST_FILES)

    def fetch(url: str, dest: str) -> None:
        real = (SHARED / "mnist" / url.rsplit("/", 1)[1]).read_bytes()
        Path(dest).write_bytes(real[: len(real) // 2])
        raise OSError("connection reset by peer")

    monkeypatch.setattr(ds, "_fetch", fetch)
    with pytest.raises(DatasetError, match="connection reset by peer"):
        data.load("mnist", "test")
    assert list(_cache(tmp_path).iterdir()) == []


def test_offline_disables_download(env, tmp_path, monkeypatch):
    monkeypatch.setenv("PREDCODE_OFFLINE", "1")
    with pytest.raises(DatasetError, match="PREDCODE_OFFLINE") as e:
        data.load("fashion-mnist", "test")
    assert str(_cache(tmp_path, "fashion-mnist")) in str(e.value) and env == []


# --- IDX parser on hand-made files ---------------------------------------------------------------


def _idx(path: Path, magic: int, dims: tuple[int, ...], payload: bytes) -> Path:
    path.write_bytes(gzip.compress(struct.pack(f">{1 + len(dims)}I", magic, *dims) + payload))
    return path


def test_idx_roundtrip(tmp_path):
    pixels = np.arange(3 * 28 * 28, dtype=np.uint64).astype(np.uint8)
    x = data.read_idx_images(_idx(tmp_path / "i.gz", 2051, (3, 28, 28), pixels.tobytes()))
    y = data.read_idx_labels(_idx(tmp_path / "l.gz", 2049, (3,), bytes([7, 0, 9])))
    assert x.shape == (3, 28, 28) and x.dtype == np.uint8 and x.flags.writeable
    np.testing.assert_array_equal(x.ravel(), pixels)
    assert y.tolist() == [7, 0, 9] and y.dtype == np.uint8


@pytest.mark.parametrize(
    "reader, magic, dims, payload, expect",
    [
        ("images", 2049, (1, 28, 28), bytes(784), "magic number 2051, found 2049"),
        ("labels", 2051, (1,), bytes(1), "magic number 2049, found 2051"),
        ("images", 2051, (3, 28, 28), bytes(2 * 784), "truncated"),
        ("labels", 2049, (5,), bytes(4), "truncated"),
        ("images", 2051, (1, 28, 28), bytes(785), "1 trailing bytes"),
        ("labels", 2049, (2,), bytes(3), "1 trailing bytes"),
        ("images", 2051, (1, 32, 32), bytes(32 * 32), "expected 28x28 images, found 32x32"),
        ("images", 2051, (), b"", "header"),
    ],
)
def test_idx_rejects_bad_content(tmp_path, reader, magic, dims, payload, expect):
    path = _idx(tmp_path / "f.gz", magic, dims, payload)
    read = data.read_idx_images if reader == "images" else data.read_idx_labels
    with pytest.raises(DatasetError, match=expect) as e:
        read(path)
    assert str(path) in str(e.value) and "Delete" in str(e.value)


def test_idx_other_size_when_asked(tmp_path):
    path = _idx(tmp_path / "f.gz", 2051, (2, 4, 5), bytes(40))
    assert data.read_idx_images(path, rows=4, cols=5).shape == (2, 4, 5)
    assert data.read_idx_images(path, rows=None, cols=None).shape == (2, 4, 5)


def test_idx_gzip_garbage(tmp_path):
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"this is not a gzip file at all")
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(struct.pack(">II", 2049, 1000) + bytes(1000))[:-20])
    for path in (garbage, cut):
        with pytest.raises(DatasetError, match="gzip") as e:
            data.read_idx_labels(path)
        assert str(path) in str(e.value)
    with pytest.raises(DatasetError, match="not found"):
        data.read_idx_labels(tmp_path / "missing.gz")


def test_idx_pair_count_mismatch(tmp_path):
    images = _idx(tmp_path / "i.gz", 2051, (3, 28, 28), bytes(3 * 784))
    labels = _idx(tmp_path / "l.gz", 2049, (2,), bytes(2))
    with pytest.raises(DatasetError, match="3 images but .* 2 labels") as e:
        data.read_idx_pair(images, labels)
    assert str(images) in str(e.value) and str(labels) in str(e.value)


# --- arguments and transforms --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, split, param, got", [("mnistt", "train", "name", "mnistt"), ("mnist", "val", "split", "val")]
)
def test_load_bad_arguments(name, split, param, got):
    with pytest.raises(ValueError) as e:
        data.load(name, split)
    assert type(e.value) is ValueError
    msg = str(e.value)
    assert msg.startswith(param) and repr(got) in msg
    allowed = data.NAMES if param == "name" else data.SPLITS
    assert all(repr(a) in msg for a in allowed)


def test_to_float():
    x = data.to_float(np.array([[0, 128, 255]], dtype=np.uint8))
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, [[0.0, 128 / 255, 1.0]], rtol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        data.to_float(np.zeros(3, dtype=np.float32))


def test_binarize():
    b = data.binarize(np.array([0, 127, 128, 255], dtype=np.uint8))
    assert b.dtype == np.float32 and b.tolist() == [0, 0, 1, 1]
    f = np.array([0.2, 0.5, 0.7], dtype=np.float32)
    assert data.binarize(f).tolist() == [0, 1, 1]
    assert data.binarize(f, threshold=0.6).tolist() == [0, 0, 1]
    with pytest.raises(TypeError):
        data.binarize(np.array([1, 2], dtype=np.int64))


def test_flatten():
    x = np.arange(3 * 28 * 28).reshape(3, 28, 28)
    f = data.flatten(x)
    assert f.shape == (3, 784)
    np.testing.assert_array_equal(f[1], x[1].ravel())


def _toy(n: int = 100):
    images = np.broadcast_to(np.arange(n)[:, None, None], (n, 2, 2)).copy()
    return images, np.arange(n) % 10


def test_train_val_split():
    images, labels = _toy()
    x_tr, y_tr, x_val, y_val = data.train_val_split(images, labels, 20, seed=0)
    assert x_tr.shape == (80, 2, 2) and x_val.shape == (20, 2, 2) and len(y_tr) == 80 and len(y_val) == 20
    ids_tr, ids_val = x_tr[:, 0, 0], x_val[:, 0, 0]
    assert not set(ids_tr) & set(ids_val) and sorted([*ids_tr, *ids_val]) == list(range(100))
    np.testing.assert_array_equal(y_tr, ids_tr % 10)
    np.testing.assert_array_equal(y_val, ids_val % 10)
    again = data.train_val_split(images, labels, 20, seed=0)
    for a, b in zip(again, (x_tr, y_tr, x_val, y_val)):
        np.testing.assert_array_equal(a, b)
    other = data.train_val_split(images, labels, 20, seed=1)
    assert set(other[2][:, 0, 0]) != set(ids_val)


@pytest.mark.parametrize("n_val", [0, 100, -1, 101, 2.5, True])
def test_train_val_split_bad_n_val(n_val):
    with pytest.raises(ValueError, match="n_val"):
        data.train_val_split(*_toy(), n_val, seed=0)


def test_train_val_split_length_mismatch():
    images, labels = _toy()
    with pytest.raises(ValueError, match="same length"):
        data.train_val_split(images, labels[:-1], 10, seed=0)
