"""MNIST, Fashion-MNIST and KMNIST: locate, verify (sha256), download and transform.

The CIFAR-10 archive is located and verified here too (``locate("cifar-10", ...)``) and read by
:mod:`predcode.data.cifar`."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from predcode.data.idx import DatasetError, read_idx_pair

NAMES = ("mnist", "fashion-mnist", "kmnist")
SPLITS = ("train", "test")
# Datasets located and verified here but read by their own module (predcode.data.cifar); not in
# NAMES, which lists the 28 x 28 datasets that configs and `predcode fit` take.
ARCHIVES = ("cifar-10",)

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "kmnist": ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    "cifar-10": ("https://www.cs.toronto.edu/~kriz/",),
}

SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
    "kmnist": {
        "train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
        "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
        "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
        "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
    },
    # The official page (https://www.cs.toronto.edu/~kriz/cifar.html) publishes only the md5,
    # c58f30108f718f92721af3b95e74349a; this sha256 of the same 170,498,071-byte archive is the one
    # Keras's cifar10.load_data verifies (file_hash).
    "cifar-10": {
        "cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    },
}

# Verified digests, keyed by (path, size, mtime_ns): each file is hashed once per process.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _check_choice(param: str, value: object, allowed: tuple[str, ...]) -> None:
    """Raise ValueError naming the parameter, the allowed values and the value got."""
    if value not in allowed:
        raise ValueError(f"{param} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def cache_dir() -> Path:
    """The user cache folder: $XDG_CACHE_HOME/predcode, default ~/.cache/predcode."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "predcode"


def search_dirs(name: str) -> list[Path]:
    """Folders searched for dataset ``name``, in order: $PREDCODE_DATA/<name>, then the cache."""
    _check_choice("name", name, NAMES + ARCHIVES)
    data = os.environ.get("PREDCODE_DATA")
    return ([Path(data) / name] if data else []) + [cache_dir() / name]


def _offline() -> bool:
    """True when $PREDCODE_OFFLINE disables downloads."""
    return os.environ.get("PREDCODE_OFFLINE", "").strip().lower() not in ("", "0", "false", "no", "off")


def _sha256(path: Path) -> str:
    """sha256 hex digest of a file, memoised by (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def _verify(path: Path, expected: str) -> None:
    """Raise DatasetError unless the file's sha256 is ``expected``."""
    actual = _sha256(path)
    if actual != expected:
        raise DatasetError(
            f"{path}: sha256 mismatch: expected {expected}, found {actual}. The file is corrupt, "
            "truncated or a different version. Delete it (predcode will download it again into its "
            "cache) or replace it with the original file."
        )


def _fetch(url: str, dest: str) -> None:
    """Download ``url`` to the file ``dest`` (overwritten)."""
    request = urllib.request.Request(url, headers={"User-Agent": "predcode"})
    with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


def _download(name: str, filename: str, folder: Path) -> tuple[Path | None, list[str]]:
    """Try every mirror; return (path, []) on success or (None, per-mirror errors)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return None, [f"cannot create {folder}: {e}"]
    errors: list[str] = []
    for mirror in MIRRORS[name]:
        url, tmp = mirror + filename, None
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=filename + ".part-")
            os.close(fd)
            _fetch(url, tmp)
            actual, expected = _sha256(Path(tmp)), SHA256[name][filename]
            if actual != expected:
                errors.append(f"{url}: downloaded file has sha256 {actual}, expected {expected}")
                continue
            os.replace(tmp, folder / filename)
            return folder / filename, []
        except (OSError, http.client.HTTPException) as e:
            errors.append(f"{url}: {type(e).__name__}: {e}")
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
    return None, errors


def locate(name: str, filename: str) -> Path:
    """Return the verified path of one dataset file, downloading it into the cache if needed."""
    _check_choice("name", name, NAMES + ARCHIVES)
    _check_choice("filename", filename, tuple(SHA256[name]))
    folders = search_dirs(name)
    for folder in folders:
        if (folder / filename).is_file():
            _verify(folder / filename, SHA256[name][filename])
            return folder / filename
    errors: list[str]
    if _offline():
        reason, errors = f"downloading is disabled (PREDCODE_OFFLINE={os.environ['PREDCODE_OFFLINE']})", []
    else:
        path, errors = _download(name, filename, folders[-1])
        if path is not None:
            return path
        reason = "the download failed on every mirror"
    searched = "".join(f"\n  - {f}" for f in folders)
    if not os.environ.get("PREDCODE_DATA"):
        searched += "\n  ($PREDCODE_DATA is not set)"
    failures = "".join(f"\n  - {e}" for e in errors)
    raise DatasetError(
        f"{name} file {filename} was not found, and {reason}.{failures}\nFolders searched:{searched}\n"
        f"To fix: set PREDCODE_DATA to a folder that holds {name}/{filename} (the original file), "
        f"or allow the download (unset PREDCODE_OFFLINE, with network access) into {folders[-1]}."
    )


def load(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a split: images uint8 (n, 28, 28) and labels uint8 (n,)."""
    _check_choice("name", name, NAMES)
    _check_choice("split", split, SPLITS)
    images_file, labels_file = _FILES[split]
    return read_idx_pair(locate(name, images_file), locate(name, labels_file))


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1] (divided by 255)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"to_float expects uint8 images; got dtype {images.dtype}")
    return images.astype(np.float32) / np.float32(255)


def binarize(images: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """float32 0/1 pixels: pixel/255 >= threshold for uint8 input, x >= threshold for float input."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = to_float(images)
    elif not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"binarize expects uint8 or floating images; got dtype {images.dtype}")
    return (images >= threshold).astype(np.float32)


def flatten(images: np.ndarray) -> np.ndarray:
    """(n, rows, cols) images to (n, rows*cols) rows."""
    images = np.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"flatten expects images of shape (n, rows, cols); got shape {images.shape}")
    return images.reshape(images.shape[0], -1)


def train_val_split(
    images: np.ndarray, labels: np.ndarray, n_val: int, *, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded random split into (x_train, y_train, x_val, y_val) with ``n_val`` validation items."""
    n = len(images)
    if len(labels) != n:
        raise ValueError(f"images and labels must have the same length; got {n} images and {len(labels)} labels")
    if isinstance(n_val, bool) or not isinstance(n_val, (int, np.integer)) or not 1 <= n_val <= n - 1:
        raise ValueError(f"n_val must be an integer in [1, {n - 1}] for {n} items; got {n_val!r}")
    perm = np.random.default_rng(seed).permutation(n)
    val, train = perm[:n_val], perm[n_val:]
    return images[train], labels[train], images[val], labels[val]


def load_binarized(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a split as float32 {0,1} rows (n, 784) and uint8 labels (n,)."""
    images, labels = load(name, split)
    return flatten(binarize(images)), labels
