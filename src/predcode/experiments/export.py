"""``predcode export``: a trained run's best model as a file other frameworks read.

:func:`export_run` reads ``<run>/best{trial}`` of a run folder of any family (a museum model, a PC
network, an MLP trained by its rule), through the loader that family's ``analyze`` and ``fit
--resume`` use, so a version-1 checkpoint is read under its version-2 names too. It writes one
`safetensors <https://huggingface.co/docs/safetensors>`_ file:

- every array under its checkpoint key path (``params/W1``, ``params/edges/y/h1/w``,
  ``params/0/W``, ``rule_state/B/0``), dtype and shape as stored; for a version-2 checkpoint these
  are exactly the names and bytes of the ``.npz``;
- the metadata header (string to string, as safetensors requires): ``format``
  (``predcode-export``), ``format_version``, ``predcode_version``, ``family`` (``gncn``, ``pc``,
  ``mlp``), ``model_kind`` (``gncn_pdh``, ``pc_network_supervised``, ``mlp_fa``, ...),
  ``checkpoint`` (``best0``), ``checkpoint_format_version``, ``config`` (the run's
  ``config.toml``, as text) and ``checkpoint_metadata`` (the checkpoint's ``.json``, as JSON).

In PyTorch::

    from safetensors.torch import load_file
    tensors = load_file("model.safetensors")          # {"params/W1": tensor, ...}

The ``safetensors`` package is the ``export`` extra (``pip install "predcode[export]"``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EXPORT_FORMAT", "EXPORT_FORMATS", "EXPORT_FORMAT_VERSION", "ExportError", "export_run", "run_arrays"]

EXPORT_FORMAT = "predcode-export"
EXPORT_FORMAT_VERSION = 1
EXPORT_FORMATS = ("safetensors",)


class ExportError(ValueError):
    """The run, the trial, the format or the output path does not allow the export (the message says why)."""


def _best_exists(run: Path, trial: int) -> None:
    if not (run / f"best{trial}.json").is_file():
        trials = sorted(int(p.stem[4:]) for p in run.glob("best*.json") if p.stem[4:].isdigit())
        hint = (
            f"trials with a best model here: {trials}; pass one of them to --trial"
            if trials
            else "no trial has a best model yet: let `predcode fit` finish at least one epoch"
        )
        raise ExportError(f"--trial: {run} holds no best{trial} checkpoint ({hint})")


def run_arrays(run: str | Path, trial: int = 0) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The best model of a run folder of any family: ``({key path: array}, metadata header)``.

    Raises :class:`ExportError` for a path that is not a run folder or a trial without a best
    model, :class:`~predcode.experiments.analyze.AnalyzeError` for a checkpoint of another config,
    :class:`~predcode.experiments.checkpoint.CheckpointError` for a damaged checkpoint.
    """
    from predcode import __version__
    from predcode.experiments.analyze import AnalyzeError
    from predcode.experiments.checkpoint import load_checkpoint, tree_arrays
    from predcode.experiments.registry import run_family

    run = Path(run)
    try:
        family = run_family(run)
    except AnalyzeError as err:
        raise ExportError(str(err)) from None
    _best_exists(run, trial)
    stem = run / f"best{trial}"
    tree: dict[str, Any]
    if family == "gncn":
        from predcode.experiments.analyze import load_run

        loaded = load_run(run, trial)
        tree, kind = {"params": loaded.params}, loaded.config.model.kind
    elif family == "pc":
        from predcode.experiments.pc_analyze import load_pc_run

        cfg, _, params = load_pc_run(run, trial)
        tree, kind = {"params": params}, f"pc_network_{cfg.network.task}"
    elif family == "mlp":
        from predcode.experiments.credit import load_rule_checkpoint

        _, rule, params, rule_state, _ = load_rule_checkpoint(stem)
        tree = {"params": params}
        if hasattr(rule, "shapes"):  # FA, DFA: the fixed feedback matrices are part of the model
            tree["rule_state"] = rule_state
        kind = f"mlp_{rule.name}"
    else:
        raise ExportError(f"--run: {run} is a run of family {family!r}; export serves gncn, pc and mlp runs")
    _, meta = load_checkpoint(stem)  # verified again: cheap, and the header records what was read
    arrays = {name: np.ascontiguousarray(np.asarray(a)) for name, a in tree_arrays(tree).items()}
    header = {
        "format": EXPORT_FORMAT,
        "format_version": str(EXPORT_FORMAT_VERSION),
        "predcode_version": __version__,
        "family": family,
        "model_kind": kind,
        "checkpoint": stem.name,
        "checkpoint_format_version": str(meta.get("format_version")),
        "config": (run / "config.toml").read_text(encoding="utf-8"),
        "checkpoint_metadata": json.dumps(meta, sort_keys=True),
    }
    return arrays, header


def export_run(
    run: str | Path, out: str | Path, *, format: str = "safetensors", trial: int = 0, force: bool = False
) -> dict[str, Any]:
    """Write the best model of ``run`` (trial ``trial``) to ``out`` in ``format``; return what was written.

    The result is ``{"path", "family", "model_kind", "arrays", "bytes"}`` (``arrays``: the number
    of tensors). An existing ``out`` is replaced only with ``force``. Raises :class:`ExportError`
    for a bad run, trial, format or output path, before anything is written.
    """
    if format not in EXPORT_FORMATS:
        raise ExportError(f"--format: expected one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    arrays, header = run_arrays(run, trial)  # the run and trial first: the options in the order given
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"--out: {out} is a folder; pass a file name such as {out / 'model.safetensors'}")
    if out.exists() and not force:
        raise ExportError(f"--out: {out} exists; pass --force to replace it, or choose another file")
    if not out.parent.is_dir():
        raise ExportError(f"--out: the folder {out.parent} does not exist; create it first")
    try:
        from safetensors.numpy import save_file
    except ImportError:
        raise ExportError(
            '--format safetensors needs the safetensors package: pip install "predcode[export]"'
        ) from None

    from predcode.experiments.atomic import atomic_path

    with atomic_path(out) as tmp:
        save_file(arrays, str(tmp), metadata=header)
    return {
        "path": str(out),
        "family": header["family"],
        "model_kind": header["model_kind"],
        "arrays": len(arrays),
        "bytes": out.stat().st_size,
    }
