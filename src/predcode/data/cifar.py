"""CIFAR-10 from its official archive ``cifar-10-python.tar.gz``, read without executing pickles.

The archive is found like the other datasets (:func:`predcode.data.locate`: ``$PREDCODE_DATA/cifar-10/``,
then the user cache ``~/.cache/predcode/cifar-10/``, else downloaded there from the official site)
and verified by its sha256 before it is opened. Its batches (``cifar-10-batches-py/data_batch_1``
.. ``_5``, ``test_batch``, ``batches.meta``) are Python pickles of dicts holding a ``uint8`` NumPy
array ``data: (10000, 3072)`` (each row the 1024 red, then green, then blue pixels of a 32 x 32
image, row-major), ``labels`` (a list of ints), ``batch_label`` and ``filenames``. predcode's own
formats are pickle-free, and unpickling can run arbitrary code, so the batches are read by
:class:`SafeUnpickler`, which interprets the pickle's opcodes itself (read with the stdlib's
disassembler :mod:`pickletools`, never the ``pickle`` module): it resolves no global at all
except the three a NumPy array pickle names (``_reconstruct``, ``ndarray``, ``dtype``), and those
to inert stand-ins that only record the shape, dtype and raw bytes; the array is then built by
:func:`numpy.frombuffer` for a ``uint8`` dtype alone (``_codecs.encode``, with which Python 3
writes bytes at protocol 2, is allowed for a str in latin-1 and nothing else). Anything else
(``os.system``, ``builtins.eval``, an object dtype) is refused with a
:class:`~predcode.data.DatasetError` naming it.

>>> x, y = load_cifar10("train")        # x: (50000, 32, 32, 3) uint8 (NHWC), y: (50000,) uint8
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from predcode.data.datasets import SPLITS, _check_choice, locate
from predcode.data.idx import DatasetError

__all__ = ["ARCHIVE", "CLASSES", "SafeUnpickler", "load_cifar10", "read_cifar10_archive", "safe_loads"]

ARCHIVE = "cifar-10-python.tar.gz"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_FOLDER = "cifar-10-batches-py"
_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


class _Dtype:
    """Stand-in for ``numpy.dtype(name, align, copy)``: keeps the name, ignores the pickled state."""

    def __init__(self, name: Any = None, *_: Any) -> None:
        self.name = name

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Array:
    """Stand-in for an ndarray being unpickled: records ``(version, shape, dtype, fortran, raw bytes)``."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def to_numpy(self) -> np.ndarray:
        state = getattr(self, "state", None)
        if not isinstance(state, tuple) or len(state) != 5:
            raise DatasetError("an array in the pickle has no readable state")
        _, shape, dtype, fortran, raw = state
        name = dtype.name if isinstance(dtype, _Dtype) else None
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if name not in ("u1", "uint8"):
            raise DatasetError(f"an array in the pickle has dtype {name!r}; only uint8 arrays are read")
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise DatasetError(f"an array in the pickle has the shape {shape!r}")
        if isinstance(raw, str):  # a Python 2 str read with encoding="latin-1"
            raw = raw.encode("latin-1")
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != int(np.prod(shape)):
            raise DatasetError(f"an array in the pickle of shape {shape} does not hold {int(np.prod(shape))} bytes")
        out = np.frombuffer(bytes(raw), np.uint8).reshape(shape, order="F" if fortran else "C")
        return np.ascontiguousarray(out)


def _reconstruct(cls: Any, shape: Any = None, dtype: Any = None) -> _Array:
    return _Array()


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2: a str and "latin1", nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise DatasetError("refused _codecs.encode of anything but a str as latin1")
    return text.encode("latin-1")


_NDARRAY = object()  # what "numpy.ndarray" resolves to: passed to _reconstruct and otherwise useless
_ALLOWED: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _latin1,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype,
}


class SafeUnpickler:
    """Reads a pickle's opcodes (:func:`pickletools.genops`, a disassembler) and builds only dicts,
    lists, tuples, strings, bytes and numbers, plus uint8 NumPy arrays through inert stand-ins
    (:func:`safe_loads` turns those into arrays). Nothing of the pickle machinery runs: every global
    but the allowed stand-ins, and every opcode outside this plain-data subset, is refused, so
    nothing named in the file is imported or called."""

    _STRINGS = ("SHORT_BINSTRING", "BINSTRING", "STRING")  # Python 2 str: read as bytes
    _PUSH = (
        "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINBYTES", "BINBYTES",
        "BINBYTES8", "BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1", "LONG4", "BINFLOAT", "FLOAT",
    )  # fmt: skip
    _CONSTANTS: ClassVar[dict[str, Any]] = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}

    def __init__(self, data: bytes):
        self.data = data

    def find_class(self, module: str, name: str) -> Any:
        """The inert stand-in of an allowed global; any other global is refused."""
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DatasetError(
                f"refused global {module}.{name}: only dicts, lists, strings, bytes, numbers and uint8 "
                "NumPy arrays are read"
            ) from None

    def load(self) -> Any:
        """The pickled value, built opcode by opcode."""
        import pickletools

        stack: list[Any] = []
        marks: list[list[Any]] = []
        memo: dict[int, Any] = {}

        def since_mark() -> list[Any]:
            nonlocal stack
            items, stack = stack, marks.pop()
            return items

        arg: Any
        for op, arg, _ in pickletools.genops(self.data):
            name = op.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                return stack.pop()
            if name in self._STRINGS:
                stack.append(arg.encode("latin-1") if isinstance(arg, str) else bytes(arg))
            elif name in self._PUSH:
                stack.append(arg)
            elif name in self._CONSTANTS:
                stack.append(self._CONSTANTS[name])
            elif name == "MARK":
                marks.append(stack)
                stack = []
            elif name in ("EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE"):
                stack.append({"EMPTY_DICT": {}, "EMPTY_LIST": [], "EMPTY_TUPLE": ()}[name])
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = stack[-n:]
                del stack[-n:]
                stack.append(tuple(items))
            elif name in ("TUPLE", "LIST"):
                items = since_mark()
                stack.append(tuple(items) if name == "TUPLE" else items)
            elif name == "DICT":
                items = since_mark()
                stack.append(dict(zip(items[::2], items[1::2], strict=True)))
            elif name == "APPEND":
                value = stack.pop()
                stack[-1].append(value)
            elif name == "APPENDS":
                items = since_mark()
                stack[-1].extend(items)
            elif name == "SETITEM":
                value, key = stack.pop(), stack.pop()
                stack[-1][key] = value
            elif name == "SETITEMS":
                items = since_mark()
                stack[-1].update(zip(items[::2], items[1::2], strict=True))
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[int(arg)])
            elif name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                stack.append(self.find_class(module, attr))
            elif name == "STACK_GLOBAL":
                attr, module = stack.pop(), stack.pop()
                stack.append(self.find_class(module, attr))
            elif name == "REDUCE":  # only an allowed stand-in can be on the stack to be called
                args, fn = stack.pop(), stack.pop()
                if not any(fn is allowed for allowed in _ALLOWED.values()) or not callable(fn):
                    raise DatasetError("refused a call of something that is not an allowed stand-in")
                stack.append(fn(*args))
            elif name == "BUILD":
                state = stack.pop()
                if not isinstance(stack[-1], (_Array, _Dtype)):
                    raise DatasetError(f"refused setting the state of a {type(stack[-1]).__name__}")
                stack[-1].__setstate__(state)
            else:
                raise DatasetError(f"refused the pickle opcode {name}: not part of the CIFAR-10 format")
        raise DatasetError("the pickle ends without STOP")


def _arrays(value: Any) -> Any:
    """The unpickled value with every stand-in turned into its NumPy array (dicts and lists walked)."""
    if isinstance(value, _Array):
        return value.to_numpy()
    if isinstance(value, dict):
        return {k: _arrays(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_arrays(v) for v in value)
    if isinstance(value, _Dtype) or value is _NDARRAY:
        raise DatasetError("a NumPy dtype or class outside an array in the pickle")
    return value


def safe_loads(data: bytes, what: str = "pickle") -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler` (Python 2 strings as bytes); ``what`` names it in errors."""
    try:
        value = SafeUnpickler(data).load()
        return _arrays(value)
    except DatasetError as err:
        raise DatasetError(f"{what}: {err}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise DatasetError(f"{what}: not a CIFAR-10 batch that can be read safely: {err}") from None


def _key(batch: dict, name: str, where: str) -> Any:
    for k in (name.encode(), name):
        if k in batch:
            return batch[k]
    raise DatasetError(f"{where}: expected a dict with the key {name!r}, got keys {sorted(map(str, batch))}")


def _read_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_loads(raw, where)
    if not isinstance(batch, dict):
        raise DatasetError(f"{where}: expected a dict, got {type(batch).__name__}")
    data, labels = _key(batch, "data", where), _key(batch, "labels", where)
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{where}: expected data of shape (n, 3072), got {getattr(data, 'shape', type(data))}")
    labels = np.asarray(labels)
    if (
        labels.shape != (len(data),)
        or labels.dtype.kind not in "iu"
        or labels.min(initial=0) < 0
        or labels.max(initial=0) > 9
    ):
        raise DatasetError(f"{where}: expected {len(data)} integer labels in 0..9, got {labels.shape} {labels.dtype}")
    images = data.reshape(len(data), 3, 32, 32).transpose(0, 2, 3, 1)  # NCHW rows to NHWC
    return np.ascontiguousarray(images), labels.astype(np.uint8)


def read_cifar10_archive(path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 32, 32, 3)`` uint8 and labels ``(n,)`` uint8 of ``split`` from the archive at ``path``
    (not verified here: :func:`load_cifar10` verifies before reading)."""
    _check_choice("split", split, SPLITS)
    images, labels = [], []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for name in _BATCHES[split]:
                member = f"{_FOLDER}/{name}"
                try:
                    info = tar.getmember(member)
                except KeyError:
                    raise DatasetError(f"{path}: the archive has no {member}") from None
                f = tar.extractfile(info)
                if f is None:
                    raise DatasetError(f"{path}: {member} is not a regular file")
                x, y = _read_batch(f.read(), f"{path}:{member}")
                images.append(x)
                labels.append(y)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DatasetError(f"{path}: not a readable .tar.gz archive: {err}") from None
    return np.concatenate(images), np.concatenate(labels)


def load_cifar10(split: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 ``split`` (``"train"``: 50000, ``"test"``: 10000): images ``(n, 32, 32, 3)`` uint8 (NHWC)
    and labels ``(n,)`` uint8 (:data:`CLASSES`), from the sha256-verified official archive."""
    _check_choice("split", split, SPLITS)
    return read_cifar10_archive(locate("cifar-10", ARCHIVE), split)
