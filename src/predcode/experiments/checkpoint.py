"""Save and load checkpoints: a pickle-free ``.npz`` of arrays plus a ``.json`` that describes it.

A checkpoint called ``run/best`` is the pair ``run/best.npz`` (an uncompressed ``np.savez`` archive,
no object arrays, so no pickles) and ``run/best.json`` (metadata, the array list with shapes and
dtypes, and the SHA-256 of the ``.npz``). The format is specified in ``docs/checkpoint-format.md``.

Every family (the GNCN museum, PC networks, the MLPs of the credit-assignment rules) stores one
pytree, ``{"params": ..., "opt_state": ..., "rule_state": ...}``, each leaf under its key path
(``params/W1``, ``params/edges/y/x/w``, ``opt_state/0/mu/W1``, ``rule_state/B/0``)::

    save_checkpoint("run/state0", {"params": params, "opt_state": opt_state}, metadata)
    tree, metadata = load_tree("run/state0", {"params": params, "opt_state": opt_state})

:func:`load_tree` rebuilds a pytree shaped like a template (arrays or ``jax.ShapeDtypeStruct``;
``jax.eval_shape(model.init, key)`` gives one without computing anything), checking every name and
shape, and reads the version-1 layouts of earlier predcode (:func:`upgrade_arrays`).

Writes are atomic per file (temporary file in the same folder, fsync, ``os.replace``) and the two
files are tied by the hash, so an interrupted save is detected at load instead of silently mixing
old and new arrays.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from predcode.experiments.atomic import _umask
from predcode.schema import ConfigError, coerce, specs

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "CheckpointMismatch",
    "check_finite",
    "check_metadata",
    "checkpoint_paths",
    "key_path_name",
    "load_checkpoint",
    "load_tree",
    "save_checkpoint",
    "strict_json",
    "tree_arrays",
    "tree_from_arrays",
    "upgrade_arrays",
    "verify_checkpoint",
]

FORMAT = "predcode-checkpoint"
FORMAT_VERSION = 2  # 2: arrays named by key path (params/W1); 1: p_{name}, opt_{i}, W{l}, feedback_*

# A name is a key path: segments of letters, digits and underscores joined by "/".
_NAME = re.compile(r"[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*")
_SEGMENT = re.compile(r"[A-Za-z0-9_]+")
# Parameter names of np.savez itself: an array with one of these names cannot be passed by keyword.
_SAVEZ_RESERVED = frozenset({"file", "allow_pickle"})
# Keys save_checkpoint writes itself; the same keys in the caller's metadata are replaced.
_MANAGED_KEYS = ("format", "format_version", "npz_sha256", "arrays", "created", "predcode_version")
_BACKUP_SUFFIX = ".prev"


class CheckpointError(ValueError):
    """A checkpoint pair cannot be read, or does not match its own description."""


class CheckpointMismatch(CheckpointError):
    """A sound checkpoint whose arrays do not fit the template: ``path`` is the first name that differs."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """Return ``(npz_path, json_path)`` for a checkpoint stem; a ``.npz``/``.json`` suffix is dropped.

    Examples:
        >>> [p.name for p in checkpoint_paths("run/best.npz")]
        ['best.npz', 'best.json']
    """
    p = Path(path)
    if p.suffix in (".npz", ".json"):
        p = p.with_suffix("")
    if not p.name:
        raise ValueError(f"checkpoint path {str(path)!r} has no file name; pass a stem like 'run/best'")
    return p.parent / (p.name + ".npz"), p.parent / (p.name + ".json")


# --------------------------------------------------------------------------------------------- save


def save_checkpoint(
    path: str | Path,
    arrays: Mapping[str, Any],
    metadata: Mapping[str, Any],
    *,
    allow_nonfinite: bool = False,
) -> tuple[Path, Path]:
    """Write the pytree ``arrays`` and ``metadata`` as the checkpoint pair ``<path>.npz`` / ``<path>.json``.

    Args:
        path: the stem, e.g. ``"run/best"`` (a trailing ``.npz`` or ``.json`` is dropped). The
            folder is created if needed. An existing pair of that name is replaced.
        arrays: a mapping whose values are arrays or pytrees of arrays (dicts, lists, tuples, named
            tuples, dataclass pytrees): each leaf is stored under its key path (:func:`tree_arrays`),
            e.g. ``{"params": {"W1": w}}`` as ``params/W1``; a flat ``{"params/W1": w}`` is the same
            checkpoint. Every path segment must match ``[A-Za-z0-9_]+`` (a whole name must not be
            ``file`` or ``allow_pickle``, the parameter names of ``np.savez``); values are converted
            with ``np.asarray`` and must not have an object dtype (they would need pickling).
        metadata: JSON-serialisable mapping (NumPy scalars are converted). The keys ``format``,
            ``format_version``, ``npz_sha256``, ``arrays``, ``created`` and ``predcode_version``
            are written by this function and replace any caller values, so the metadata of a loaded
            checkpoint can be passed straight back in.
        allow_nonfinite: by default a floating array holding NaN or +-inf is refused
            (``ValueError`` naming the array): diverged weights are never written to disk.

    Returns:
        ``(npz_path, json_path)``.

    Both files are first written completely to temporary files next to the targets and fsynced;
    then the ``.npz`` is moved into place, then the ``.json`` (``os.replace``). If a Python-level
    error interrupts the save after the ``.npz`` was replaced, the previous ``.npz`` is restored
    from a hard link (or copy) kept as ``<name>.npz.prev`` during the swap. A hard crash between
    the two moves (``SIGKILL``, power loss) leaves a new ``.npz`` beside the old ``.json`` and the
    old arrays in ``<name>.npz.prev``: ``load_checkpoint`` then returns the old pair (the ``.json``
    is the commit point, so an unfinished save never happened), and the next save first puts the
    old ``.npz`` back and removes the unfinished save's temporary files. One process at a time may
    write a given checkpoint.
    """
    npz_path, json_path = checkpoint_paths(path)
    prepared = _prepare_arrays(tree_arrays(arrays), allow_nonfinite)
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    folder = npz_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    _finish_interrupted_save(npz_path, json_path)

    from predcode import __version__ as predcode_version  # lazy: predcode/__init__ may import us

    temps: list[Path] = []
    try:
        npz_tmp = _temp_path(folder, npz_path.name, temps)
        with open(npz_tmp, "wb") as f:
            # Every value was checked above; allow_pickle=False makes numpy refuse objects too.
            np.savez(f, allow_pickle=False, **prepared)
            f.flush()
            os.fsync(f.fileno())
        digest = _sha256_file(npz_tmp)

        document: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
        document.update((k, v) for k, v in metadata.items() if k not in _MANAGED_KEYS)
        document["arrays"] = {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in prepared.items()}
        document["npz_sha256"] = digest
        document["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        document["predcode_version"] = predcode_version
        text = _dump_json(document)

        json_tmp = _temp_path(folder, json_path.name, temps)
        with open(json_tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

        _swap_in(npz_tmp, npz_path, json_tmp, json_path, temps)
    finally:
        for t in temps:
            with contextlib.suppress(FileNotFoundError):
                t.unlink()
    return npz_path, json_path


def _finish_interrupted_save(npz_path: Path, json_path: Path) -> None:
    """Undo what a save killed before it finished left behind: restore the old npz, drop temporaries."""
    backup = npz_path.with_name(npz_path.name + _BACKUP_SUFFIX)
    if backup.is_file():
        try:
            recorded = strict_json(json_path.read_text(encoding="utf-8")).get("npz_sha256")
        except (OSError, ValueError, AttributeError):
            recorded = None
        current = _sha256_file(npz_path) if npz_path.is_file() else None
        if recorded is not None and recorded != current and _sha256_file(backup) == recorded:
            os.replace(backup, npz_path)  # killed between the two moves: the json still names the old npz
            _fsync_dir(npz_path.parent)
        else:
            backup.unlink(missing_ok=True)
    for target in (npz_path, json_path):
        for stale in target.parent.glob(_glob_escape(target.name) + ".tmp-*"):
            with contextlib.suppress(OSError):
                stale.unlink()


def _glob_escape(name: str) -> str:
    """``name`` with the glob wildcards ``*?[`` made literal."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def key_path_name(path: tuple, prefix: str = "") -> str:
    """The checkpoint name of a ``jax.tree_util`` key path: ``prefix`` and its segments joined by ``/``.

    A dict key is written as is, a list or tuple index as its number, a named-tuple or dataclass
    field by its name: ``(DictKey('opt_state'), SequenceKey(0), GetAttrKey('mu'), DictKey('W1'))``
    is ``opt_state/0/mu/W1``. Raises ``ValueError`` for a segment outside ``[A-Za-z0-9_]+``.

    Examples:
        >>> from jax.tree_util import DictKey, SequenceKey
        >>> key_path_name((DictKey("rule_state"), SequenceKey(1)))
        'rule_state/1'
    """
    parts = [prefix] if prefix else []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            part = k.key
        elif isinstance(k, jax.tree_util.SequenceKey):
            part = str(k.idx)
        elif isinstance(k, jax.tree_util.GetAttrKey):
            part = k.name
        elif isinstance(k, jax.tree_util.FlattenedIndexKey):
            part = str(k.key)
        else:
            raise ValueError(f"array name: cannot name the pytree key {k!r} (expected dict keys, indices or fields)")
        if not isinstance(part, str) or not _SEGMENT.fullmatch(part):
            # The whole path so far, with the bad segment, names the array in the message.
            shown = "/".join([*parts, repr(part)])
            raise ValueError(
                f"array name {part!r} is not allowed (in {shown}): names are key paths whose segments "
                "match [A-Za-z0-9_]+ (letters, digits, underscore), e.g. 'W1' or 'params/edges/y/x/w'"
            )
        parts.append(part)
    return "/".join(parts)


def tree_arrays(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten a mapping of pytrees to ``{key path name: leaf}`` (see :func:`key_path_name`).

    The top-level keys keep their order (``params`` before ``opt_state`` if given so); below them,
    the order is ``jax.tree_util``'s flatten order. A top-level key may itself hold ``/``
    (``{"params/W1": w}`` names the same array as ``{"params": {"W1": w}}``). Raises ``TypeError``
    unless ``tree`` is a mapping, ``ValueError`` for a name that is not allowed or given twice.
    """
    if not isinstance(tree, Mapping):
        raise TypeError(f"arrays must be a mapping of name -> array or pytree, got {type(tree).__name__}")
    out: dict[str, Any] = {}
    for top, sub in tree.items():
        if not isinstance(top, str) or not _NAME.fullmatch(top):
            raise ValueError(
                f"array name {top!r} is not allowed: names are key paths whose segments match "
                "[A-Za-z0-9_]+ (letters, digits, underscore), e.g. 'W1' or 'params/edges/y/x/w'"
            )
        for path, leaf in jax.tree_util.tree_flatten_with_path(sub)[0]:
            name = key_path_name(path, top)
            if name in out:
                raise ValueError(f"array name {name!r} is given twice; every array needs its own key path")
            out[name] = leaf
    return out


def _prepare_arrays(arrays: Mapping[str, Any], allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
    prepared: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if name in _SAVEZ_RESERVED:
            raise ValueError(f"array name {name!r} is reserved (it is a parameter name of np.savez); rename it")
        a = np.asarray(value)
        if a.dtype.hasobject:
            raise ValueError(
                f"array {name!r} has dtype {a.dtype}, which holds Python objects and would need "
                "pickling; convert it to a numeric or string dtype first"
            )
        if not allow_nonfinite and np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
            raise ValueError(
                f"array {name!r}: expected finite values, got {int(np.isnan(a).sum())} NaN and "
                f"{int(np.isinf(a).sum())} infinite value(s); predcode does not write diverged "
                "weights to disk. Keep the last good checkpoint (lower the learning rate or the "
                "settling step beta), or pass allow_nonfinite=True to store such data on purpose"
            )
        prepared[name] = a
    return prepared


def _temp_path(folder: Path, target_name: str, temps: list[Path]) -> Path:
    with tempfile.NamedTemporaryFile(dir=folder, prefix=target_name + ".tmp-", delete=False) as f:
        p = Path(f.name)
    os.chmod(p, 0o666 & ~_umask())  # NamedTemporaryFile makes 0600; a checkpoint is an ordinary file
    temps.append(p)
    return p


def _swap_in(npz_tmp: Path, npz_path: Path, json_tmp: Path, json_path: Path, temps: list) -> None:
    """Move the new npz, then the new json, into place; undo the npz move if the json move fails."""
    backup = npz_path.with_name(npz_path.name + _BACKUP_SUFFIX)
    with contextlib.suppress(FileNotFoundError):
        backup.unlink()  # left by an earlier interrupted save; the pair being written supersedes it
    have_backup = False
    if npz_path.exists():
        try:
            os.link(npz_path, backup)
        except OSError:  # no hard links on this file system: copy instead
            shutil.copyfile(npz_path, backup)
            _fsync_file(backup)
        have_backup = True
        temps.append(backup)  # removed once the swap is over, whichever way it ends

    os.replace(npz_tmp, npz_path)
    try:
        os.replace(json_tmp, json_path)
    except BaseException:
        if have_backup:
            os.replace(backup, npz_path)  # the old json still describes the old npz
        else:
            with contextlib.suppress(FileNotFoundError):
                npz_path.unlink()  # no old pair existed: do not leave an npz without its json
        raise
    _fsync_dir(npz_path.parent)


def _dump_json(document: Mapping[str, Any]) -> str:
    def convert(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    try:
        return json.dumps(document, indent=2, default=convert, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"checkpoint metadata cannot be written as strict JSON ({exc}); use str, int, float "
            "(finite), bool, None, lists and dicts with string keys"
        ) from exc


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    # Makes the renames durable on POSIX; directories cannot be opened this way on Windows.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- load


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify the pair ``<path>.npz`` / ``<path>.json``; return ``(arrays, metadata)``.

    ``arrays`` is flat, ``{key path name: np.ndarray}``, under the names stored in the file (a
    version-1 file keeps its version-1 names); :func:`load_tree` rebuilds a pytree from it.

    Checks, in order: the JSON parses and declares ``format == "predcode-checkpoint"`` with a
    ``format_version`` this predcode understands; the ``.npz`` bytes have the recorded SHA-256;
    the archive loads with ``allow_pickle=False`` (object arrays are refused, never unpickled);
    the archive holds exactly the arrays listed, each with the recorded shape and dtype. If the
    ``.npz`` does not match but ``<name>.npz.prev`` does (a save was killed between its two moves),
    the previous checkpoint is loaded from it, with a ``RuntimeWarning``.

    Raises:
        CheckpointError: (a ``ValueError``) on any failed check; the message names the file, what
            was expected, what was found, and how to fix it.
    """
    npz_path, json_path = checkpoint_paths(path)
    metadata = _read_metadata(json_path)
    listed = _listed_arrays(metadata, json_path)

    try:
        data = npz_path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(
            f"{npz_path}: file not found, but {json_path.name} describes it. Expected the array "
            f"file next to its json; restore {npz_path.name} from where the checkpoint was copied."
        ) from None
    except OSError as exc:
        raise CheckpointError(f"{npz_path}: cannot be read ({exc}); check permissions.") from exc

    expected = metadata["npz_sha256"]
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        backup = npz_path.with_name(npz_path.name + _BACKUP_SUFFIX)
        kept = _read_if_hash(backup, expected)
        if kept is None:
            raise CheckpointError(_hash_mismatch_message(npz_path, json_path, expected, found, len(data)))
        # A save was killed between its two moves: the json (the commit point) still describes
        # the previous arrays, which the save kept in <name>.npz.prev. That pair is the checkpoint.
        warnings.warn(
            f"{npz_path}: an interrupted save left a newer {npz_path.name} that {json_path.name} "
            f"does not describe; loaded the previous checkpoint from {backup.name} (its SHA-256 "
            "matches). The next save to this path tidies the folder.",
            RuntimeWarning,
            stacklevel=2,
        )
        data = kept

    arrays = _read_npz(data, npz_path)

    missing = sorted(set(listed) - set(arrays))
    extra = sorted(set(arrays) - set(listed))
    if missing or extra:
        raise CheckpointError(
            f"{npz_path}: the arrays do not match {json_path.name}. Expected {sorted(listed)}; "
            f"missing {missing}, unexpected {extra}. The json was edited or belongs to another "
            "checkpoint: save the checkpoint again with save_checkpoint."
        )
    for name, spec in listed.items():
        a = arrays[name]
        if list(a.shape) != spec["shape"] or str(a.dtype) != spec["dtype"]:
            raise CheckpointError(
                f"{npz_path}: array {name!r} expected shape {tuple(spec['shape'])} dtype "
                f"{spec['dtype']} (as recorded in {json_path.name}), found shape {a.shape} dtype "
                f"{a.dtype}. The json was edited or belongs to another checkpoint: save the "
                "checkpoint again with save_checkpoint."
            )
    return arrays, metadata


def verify_checkpoint(path: str | Path) -> dict[str, Any]:
    """Run every check of :func:`load_checkpoint` and return the metadata; raise CheckpointError."""
    _, metadata = load_checkpoint(path)
    return metadata


def load_tree(path: str | Path, like: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load the checkpoint ``<path>`` into a pytree shaped like ``like``; return ``(tree, metadata)``.

    ``like`` is the template, e.g. ``{"params": params, "opt_state": opt_state}``: its leaves may be
    arrays or ``jax.ShapeDtypeStruct`` (``jax.eval_shape(model.init, key)``), only their shapes are
    used. The file is read and verified by :func:`load_checkpoint`, a version-1 file is renamed by
    :func:`upgrade_arrays`, then :func:`tree_from_arrays` checks every name and shape. The leaves
    of ``tree`` are JAX arrays with the dtypes stored in the file.

    Raises:
        CheckpointMismatch: the checkpoint is sound but does not fit ``like``; the message names the
            first missing, extra or mis-shaped path.
        CheckpointError: the pair cannot be read or fails its own checks.
    """
    arrays, metadata = load_checkpoint(path)
    source = str(checkpoint_paths(path)[0])
    return tree_from_arrays(upgrade_arrays(arrays, metadata, like, source=source), like, source=source), metadata


def tree_from_arrays(arrays: Mapping[str, Any], like: Mapping[str, Any], *, source: str = "checkpoint") -> dict:
    """Rebuild a pytree shaped like ``like`` from ``{key path name: array}`` (version-2 names).

    The names and shapes must be exactly those of ``like``'s leaves (:func:`tree_arrays`); the first
    one that differs, in the template's order (then the first extra array), raises
    :class:`CheckpointMismatch` naming it, what the template expects and what ``source`` holds.
    """
    want = tree_arrays(like)
    hint = "the checkpoint was written for another model or configuration"
    for name, leaf in want.items():
        if name not in arrays:
            raise CheckpointMismatch(
                f"{source}: array {name!r} missing: the template expects {len(want)} arrays, the "
                f"checkpoint holds {len(arrays)} ({_preview(arrays)}); {hint}",
                name,
            )
        expected, got = tuple(np.shape(leaf)), tuple(np.shape(arrays[name]))
        if expected != got:
            raise CheckpointMismatch(
                f"{source}: array {name!r} expected shape {expected} (from the template), got shape {got}; {hint}",
                name,
            )
    extra = [name for name in arrays if name not in want]
    if extra:
        raise CheckpointMismatch(
            f"{source}: unexpected array {extra[0]!r} ({len(extra)} array(s) not in the template, "
            f"which expects {_preview(want)}); {hint}",
            extra[0],
        )
    tree: dict[str, Any] = {}
    for top, sub in like.items():
        paths, treedef = jax.tree_util.tree_flatten_with_path(sub)
        names = [key_path_name(p, top) for p, _ in paths]
        tree[top] = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(arrays[n]) for n in names])
    return tree


def _preview(names: Mapping[str, Any] | list[str], n: int = 4) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "") if names else "none"


_V1_OPT = re.compile(r"opt_(\d+)")
_V1_FEEDBACK = re.compile(r"feedback_[BD](\d+)")


def upgrade_arrays(
    arrays: Mapping[str, Any], metadata: Mapping[str, Any], like: Mapping[str, Any], *, source: str = "checkpoint"
) -> dict[str, Any]:
    """The arrays of a checkpoint under their version-2 key-path names (a version-2 file is unchanged).

    Version 1 had one layout per family, told apart by the metadata. Where it stored arrays by
    position, the template ``like`` (as for :func:`load_tree`) gives their names, in flatten order:

    - PC network (metadata ``param_paths``): ``p_{i}`` and ``opt_{i}`` are the i-th leaves of
      ``like["params"]`` and ``like["opt_state"]``; the recorded ``param_paths`` / ``opt_paths``
      (``jax.tree_util.keystr``) must be the template's.
    - MLP of the credit rules (``kind`` ``"credit-mlp"``): ``W1, b1, W2, b2, ...`` are the leaves of
      ``like["params"]``; ``feedback_B{l}`` (FA) or ``feedback_D{l}`` (DFA), in increasing ``l``,
      are the leaves of ``like["rule_state"]``.
    - GNCN museum (any other): ``p_{name}`` (state) and ``{name}`` (best, demo model) are
      ``params/{name}``; ``opt_{i}`` is the i-th leaf of ``like["opt_state"]``.

    Raises :class:`CheckpointMismatch` when the positions cannot match the template.
    """
    if metadata.get("format_version", FORMAT_VERSION) >= 2:
        return dict(arrays)
    rename: dict[str, str] = {}

    def by_position(group: str, old: list[str]) -> None:
        if group not in like:
            return  # left under its old name: the template check reports it as unexpected
        new = list(tree_arrays({group: like[group]}))
        if len(new) != len(old):
            raise CheckpointMismatch(
                f"{source}: format version 1 stored {len(old)} {group} arrays by position "
                f"({_preview(old)}), the template expects {len(new)} ({_preview(new)}); the "
                "checkpoint was written for another model or configuration",
                group,
            )
        rename.update(zip(old, new))

    if "param_paths" in metadata:  # PC network
        for prefix, group, key in (("p", "params", "param_paths"), ("opt", "opt_state", "opt_paths")):
            if key not in metadata or group not in like:
                continue
            want = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(like[group])[0]]
            if metadata[key] != want:
                raise CheckpointMismatch(
                    f"{source}: holds {group} {metadata[key]} but the template has {want}; it was "
                    "written for another network",
                    group,
                )
            by_position(group, [f"{prefix}_{i}" for i in range(len(want))])
    elif metadata.get("kind") == "credit-mlp":
        n_layers = len(metadata.get("sizes", ())) - 1
        by_position("params", [n for l in range(1, n_layers + 1) for n in (f"W{l}", f"b{l}") if n in arrays])
        feedback = {n: int(m.group(1)) for n in arrays if (m := _V1_FEEDBACK.fullmatch(n))}
        if feedback:
            by_position("rule_state", sorted(feedback, key=feedback.__getitem__))
    else:  # GNCN museum
        rename.update((n, "params/" + n.removeprefix("p_")) for n in arrays if not _V1_OPT.fullmatch(n))
        opt = sorted((n for n in arrays if _V1_OPT.fullmatch(n)), key=lambda n: int(n[4:]))
        if opt:
            by_position("opt_state", opt)
    return {rename.get(name, name): a for name, a in arrays.items()}


def _no_constant(name: str) -> Any:
    raise ValueError(f"the non-standard constant {name}, which strict JSON does not have")


def strict_json(text: str) -> Any:
    """``json.loads`` of strict JSON: a literal ``NaN``, ``Infinity`` or ``-Infinity`` raises ``ValueError``.

    Python's ``json`` reads those constants by default although JSON has none; predcode writes its
    files with ``allow_nan=False`` and reads them back with this.
    """
    return json.loads(text, parse_constant=_no_constant)


def check_metadata(
    metadata: Mapping[str, Any],
    schema: type,
    *,
    source: str | Path,
    names: Mapping[str, str] | None = None,
    expected: Any = None,
    expected_source: str = "the run's config.toml",
    build: bool = True,
) -> Any:
    """Validate a checkpoint's description of its model with the config schema it was written from.

    ``schema`` is a config dataclass declared through :func:`predcode.schema.setting` (``GNCNConfig``,
    ``MLPModelConfig``, ``NetworkSection``); ``names`` maps its fields to the metadata keys (default:
    the same names). Each field the metadata records is checked as a config value is (type, range,
    choices); with ``build`` the schema object is built from them (its cross-field checks run too)
    and returned. With ``expected`` (the run's config object of that schema) every recorded field
    must equal the config's. Fields a checkpoint of an older predcode does not record are skipped.
    Raises :class:`CheckpointError` naming ``source``, the key, what was expected and what was found.
    """
    names = dict(names) if names is not None else {f: f for f in specs(schema)}
    fields = specs(schema)
    values: dict[str, Any] = {}
    for field, key in names.items():
        if key not in metadata:
            continue
        try:
            values[field] = coerce(key, fields[field], metadata[key], words=False)
        except ConfigError as err:
            raise CheckpointError(
                f"{source}: the recorded model is invalid: {err}; the metadata is damaged or edited, "
                "save the checkpoint again (or restore it)"
            ) from None
    built = None
    if build:
        try:
            built = schema(**values)
        except (ConfigError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"{source}: the recorded model is invalid: {err}; the metadata is damaged or edited, "
                "save the checkpoint again (or restore it)"
            ) from None
    if expected is not None:
        for field, value in values.items():
            if built is not None:  # compare what the values mean: an unset phi is the kind's own
                value = getattr(built, field)
            want = getattr(expected, field)
            if value != want:
                raise CheckpointError(
                    f"{source}: {names[field]} is {_plain(value)} in the checkpoint, but {_plain(want)} in "
                    f"{expected_source}; the checkpoint belongs to another model (restore the run's own "
                    "checkpoint, or analyze it with the config it was trained with)"
                )
    return built


def check_finite(arrays: Mapping[str, Any], source: str | Path) -> None:
    """Refuse a loaded checkpoint whose floating arrays hold NaN or infinity, naming the array (CheckpointError).

    ``save_checkpoint`` writes such arrays only with ``allow_nonfinite=True``; a model built from
    them would only pass the NaN on to a later stage (a mixture fit, an image).
    """
    for name, a in tree_arrays(arrays).items():
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
            n_nan, n_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
            raise CheckpointError(
                f"{source}: array {name!r} expected finite values, found {n_nan} NaN and {n_inf} infinite "
                "value(s); the model diverged before it was saved (or the file was edited): use an earlier "
                "checkpoint or train again"
            )


def _plain(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _read_metadata(json_path: Path) -> dict[str, Any]:
    try:
        text = json_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(
            f"{json_path}: file not found. A checkpoint is a pair <name>.npz + <name>.json; pass "
            "the stem (e.g. 'run/best') of a pair written by save_checkpoint."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{json_path}: cannot be read as UTF-8 text ({exc}).") from exc
    try:
        metadata = strict_json(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{json_path}: expected JSON, found a parse error ({exc}). The file is damaged or "
            "truncated: restore it or save the checkpoint again."
        ) from exc
    except ValueError as exc:
        raise CheckpointError(
            f"{json_path}: expected strict JSON, found {exc}. The file was edited or written by "
            "another tool: restore it or save the checkpoint again."
        ) from None
    if not isinstance(metadata, dict):
        raise CheckpointError(
            f"{json_path}: expected a JSON object, found {type(metadata).__name__}; this is not a "
            "predcode checkpoint description."
        )

    fmt = metadata.get("format")
    if fmt != FORMAT:
        raise CheckpointError(
            f'{json_path}: expected "format": "{FORMAT}", found {fmt!r}; this json does not '
            "describe a predcode checkpoint (pass the stem of a pair written by save_checkpoint)."
        )
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(
            f'{json_path}: expected an integer "format_version" >= 1, found {version!r}; the '
            "json is damaged: save the checkpoint again."
        )
    if version > FORMAT_VERSION:
        from predcode import __version__ as predcode_version

        raise CheckpointError(
            f"{json_path}: format_version {version} is newer than this predcode "
            f"({predcode_version}) reads (up to {FORMAT_VERSION}); the checkpoint was written by a "
            "newer predcode. Upgrade predcode (pip install -U predcode) to load it."
        )

    digest = metadata.get("npz_sha256")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise CheckpointError(
            f'{json_path}: expected "npz_sha256" to be 64 lowercase hex digits, found '
            f"{digest!r}; the json is damaged: save the checkpoint again."
        )
    return metadata


def _listed_arrays(metadata: Mapping[str, Any], json_path: Path) -> dict[str, dict[str, Any]]:
    listed = metadata.get("arrays")
    if not isinstance(listed, dict):
        raise CheckpointError(
            f'{json_path}: expected "arrays" to be an object of name -> {{shape, dtype}}, found '
            f"{type(listed).__name__}; the json is damaged: save the checkpoint again."
        )
    for name, spec in listed.items():
        ok = (
            _NAME.fullmatch(name)
            and isinstance(spec, dict)
            and isinstance(spec.get("shape"), list)
            and all(type(n) is int and n >= 0 for n in spec["shape"])
            and isinstance(spec.get("dtype"), str)
        )
        if not ok:
            raise CheckpointError(
                f'{json_path}: entry {name!r} of "arrays" expected a key path matching '
                f'[A-Za-z0-9_]+(/[A-Za-z0-9_]+)* and {{"shape": [ints], "dtype": str}}, found {spec!r}; the json '
                "is damaged: save the checkpoint again."
            )
    return listed


def _read_npz(data: bytes, npz_path: Path) -> dict[str, np.ndarray]:
    fix = "Save the checkpoint again, or restore the file from a copy."
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:  # numpy saw a pickle and refused it (allow_pickle=False)
        raise CheckpointError(
            f"{npz_path}: expected an .npz archive, found data that needs unpickling, which "
            f"predcode never loads ({exc}). {fix}"
        ) from exc
    except Exception as exc:  # a damaged or crafted file: zipfile and numpy raise many kinds
        raise CheckpointError(
            f"{npz_path}: expected an .npz archive, cannot read it ({type(exc).__name__}: {exc}). {fix}"
        ) from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise CheckpointError(
            f"{npz_path}: expected an .npz archive (a zip of .npy files), found a single {type(npz).__name__}. {fix}"
        )
    arrays: dict[str, np.ndarray] = {}
    with npz:
        for name in npz.files:
            try:
                arrays[name] = npz[name]
            except ValueError as exc:
                if "allow_pickle" in str(exc):  # numpy refused an object array before unpickling
                    raise CheckpointError(
                        f"{npz_path}: array {name!r} expected a plain numeric or string dtype, found "
                        f"a pickled object array, which predcode refuses to unpickle ({exc}). The "
                        f"file was not written by save_checkpoint; do not trust it. {fix}"
                    ) from exc
                raise CheckpointError(
                    f"{npz_path}: array {name!r} expected a valid .npy member, cannot read it ({exc}). {fix}"
                ) from exc
            except Exception as exc:  # zipfile, numpy's header parser (TokenError), MemoryError, ...
                raise CheckpointError(
                    f"{npz_path}: array {name!r} cannot be read ({type(exc).__name__}: {exc}). {fix}"
                ) from exc
            if not isinstance(arrays[name], np.ndarray):  # numpy returns a member without the
                raise CheckpointError(  # .npy magic as raw bytes
                    f"{npz_path}: member {name!r} expected an .npy array (starting with the NPY magic "
                    f"string), found {type(arrays[name]).__name__}. {fix}"
                )
    return arrays


def _read_if_hash(path: Path, expected: str) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == expected else None


def _hash_mismatch_message(npz_path: Path, json_path: Path, expected: str, found: str, size: int) -> str:
    message = (
        f"{npz_path}: SHA-256 mismatch. Expected {expected} (recorded in {json_path.name}), found "
        f"{found} ({size} bytes). The .npz was changed, truncated or damaged after it was saved, "
        "or a save was interrupted between replacing the .npz and the .json."
    )
    hints = []
    backup = npz_path.with_name(npz_path.name + _BACKUP_SUFFIX)
    if backup.is_file() and _sha256_file(backup) == expected:
        hints.append(
            f"{backup.name} matches the recorded hash (an interrupted save left it): rename it to "
            f"{npz_path.name} to recover the previous checkpoint"
        )
    for pending in sorted(json_path.parent.glob(json_path.name + ".tmp-*")):
        try:
            if strict_json(pending.read_text(encoding="utf-8")).get("npz_sha256") == found:
                hints.append(
                    f"{pending.name} describes the current {npz_path.name} (the interrupted save "
                    f"had written it): rename it to {json_path.name} to keep the new checkpoint"
                )
                break
        except (OSError, ValueError, AttributeError):
            continue
    if not hints:
        hints.append("restore both files from a copy, or save the checkpoint again")
    return message + " To fix: " + "; or ".join(hints) + "."
