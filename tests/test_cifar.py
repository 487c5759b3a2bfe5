"""The CIFAR-10 loader on a small archive of the official format, written here (no copy exists on
these machines): the layout, the sha256 check, and the restricted unpickler refusing code."""

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from predcode.data import DatasetError, datasets
from predcode.data.cifar import ARCHIVE, load_cifar10, safe_loads


def _batch(rng, n, label):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    return {
        b"batch_label": label.encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def _archive(path, batches):
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in batches.items():
            raw = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def small_cifar(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": _batch(rng, 3, f"training batch {i} of 5") for i in range(1, 6)}
    batches["test_batch"] = _batch(rng, 4, "testing batch 1 of 1")
    batches["batches.meta"] = {b"label_names": [b"airplane"], b"num_vis": 3072, b"num_cases_per_batch": 3}
    folder = tmp_path / "data" / "cifar-10"
    folder.mkdir(parents=True)
    digest = _archive(folder / ARCHIVE, batches)
    monkeypatch.setenv("PREDCODE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PREDCODE_OFFLINE", "1")
    monkeypatch.setitem(datasets.SHA256, "cifar-10", {ARCHIVE: digest})
    return batches, folder / ARCHIVE


def test_loads_the_official_layout_as_nhwc(small_cifar):
    batches, _ = small_cifar
    x, y = load_cifar10("train")
    assert x.shape == (15, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (15,) and y.dtype == np.uint8
    first = batches["data_batch_1"]
    # pixel (i, j) of channel c is data[n, c * 1024 + i * 32 + j]
    for c in range(3):
        np.testing.assert_array_equal(x[0, :, :, c], first[b"data"][0, c * 1024 : (c + 1) * 1024].reshape(32, 32))
    np.testing.assert_array_equal(y[:3], first[b"labels"])
    np.testing.assert_array_equal(y[12:], batches["data_batch_5"][b"labels"])
    xt, yt = load_cifar10("test")
    assert xt.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(yt, batches["test_batch"][b"labels"])


def test_the_published_sha256_is_the_one_checked(small_cifar, monkeypatch):
    _, path = small_cifar
    monkeypatch.setitem(datasets.SHA256, "cifar-10", {ARCHIVE: "0" * 64})
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        load_cifar10("train")


def test_the_official_digest_is_recorded():
    # sha256 of the 170,498,071-byte official archive (md5 c58f30108f718f92721af3b95e74349a)
    assert datasets.SHA256["cifar-10"][ARCHIVE] == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    assert datasets.MIRRORS["cifar-10"] == ("https://www.cs.toronto.edu/~kriz/",)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_malicious_pickle_is_refused(small_cifar, tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match=r"refused global (posix|os|nt)\.system"):
        safe_loads(pickle.dumps({b"data": _Evil()}, protocol=2))
    with pytest.raises(DatasetError, match=r"refused global builtins\.eval"):
        safe_loads(b"cbuiltins\neval\n(S'1'\ntR.")
    with pytest.raises(DatasetError, match=r"refused global __builtin__\.object"):
        safe_loads(pickle.dumps(np.array([object()], dtype=object), protocol=2))
    with pytest.raises(DatasetError, match="dtype 'O8'; only uint8"):
        safe_loads(pickle.dumps(np.array([None], dtype=object), protocol=2))
    with pytest.raises(DatasetError, match="only uint8"):
        safe_loads(pickle.dumps(np.zeros(3, np.float64), protocol=2))
    # inside an archive: the loader names the batch and refuses it
    batches, _ = small_cifar
    bad = dict(batches, data_batch_3=pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    folder = tmp_path / "evil" / "cifar-10"
    folder.mkdir(parents=True)
    monkeypatch.setitem(datasets.SHA256, "cifar-10", {ARCHIVE: _archive(folder / ARCHIVE, bad)})
    monkeypatch.setenv("PREDCODE_DATA", str(tmp_path / "evil"))
    with pytest.raises(DatasetError, match="data_batch_3: .*refused global"):
        load_cifar10("train")


def test_missing_archive_offline_names_the_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("PREDCODE_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("PREDCODE_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="cifar-10 file cifar-10-python.tar.gz was not found"):
        load_cifar10("test")
    with pytest.raises(ValueError, match="split must be one of"):
        load_cifar10("val")
