"""Fit configurations: frozen, validated dataclasses read from TOML or legacy ngc-learn 0.x files.

A :class:`FitConfig` holds everything ``predcode fit`` needs: the model (:class:`GNCNConfig`), the
data, the training loop and the optimizer. It is read from

- TOML (``*.toml``): sections ``[model]``, ``[data]``, ``[train]``, ``[optimizer]`` and a top-level
  ``out_dir``; relative paths are relative to the config file's folder;
- the legacy ngc-learn 0.x format (any other suffix, e.g. Walkthrough 1's ``fit.cfg``):
  ``name = value`` lines, spaces ignored, ``#`` comments, a later duplicate key wins; relative paths
  are relative to the current working directory, as in legacy.

Every value is checked on construction; every problem raises :class:`ConfigError`, whose message
names the file (and line where known), the key, what was expected, what was got and the fix. The
schema, every key and the legacy key mapping are documented in ``docs/config.md``::

    cfg = load_config("configs/mnist/gncn_pdh.toml")
    cfg = with_overrides(cfg, **{"train.epochs": 2})
    text = dump_toml(cfg)          # parse_toml(text) == cfg
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optax

from predcode.activations import ACTIVATIONS
from predcode.cells import CELLS
from predcode.data import NAMES
from predcode.dynamics.solvers import SOLVERS
from predcode.learning.optim import keras_adam
from predcode.models.gncn import E_INITS, LATERAL_FORMS, MUSEUM, SIGMA_RULES, SWITCHES, X_SIGNALS, GNCNConfig

if TYPE_CHECKING:  # pc_config imports this module
    from predcode.experiments.pc_config import PCFitConfig

__all__ = [
    "ConfigError",
    "DataConfig",
    "FitConfig",
    "LEGACY_KEYS",
    "LEGACY_MODEL_TYPES",
    "OPTIMIZERS",
    "OptimizerConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "dump_toml",
    "find_config",
    "load_config",
    "model_config",
    "parse_legacy",
    "parse_override",
    "parse_toml",
    "shipped_configs",
    "shipped_configs_dir",
    "with_overrides",
]

OPTIMIZERS = ("keras_adam", "adam", "sgd")
SECTIONS = ("model", "data", "train", "optimizer")
IMAGE_DIM = 784  # every dataset in predcode.data.NAMES holds 28 x 28 images
SEED_MAX = 2**32 - 1


class ConfigError(ValueError):
    """A problem with a config: file missing, syntax, unknown key, wrong type or value out of range.

    ``key`` is the dotted key (``"train.batch_size"``) where one is concerned, ``source`` the file
    and ``line`` its line where known; the message says all of it, plus expected, got and the fix.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        label: str | None = None,
        reason: str | None = None,
        source: str | None = None,
        line: int | None = None,
    ):
        super().__init__(message)
        self.key, self.label, self.reason = key, label or key, reason
        self.source, self.line = source, line

    def located(self, source: str | None, line: int | None = None, label: str | None = None) -> ConfigError:
        """The same problem, with the file (and line) in front and the key shown as ``label``."""
        label = label or self.label
        body = f"{label}: {self.reason}" if self.reason is not None and label else str(self)
        return ConfigError(
            f"{_where(source, line)}: {body}", key=self.key, label=label, reason=self.reason, source=source, line=line
        )


def _where(source: str | None, line: int | None = None) -> str:
    name = source if source is not None else "<config>"
    return name if line is None else f"{name}, line {line}"


def _bad(key: str, expected: str, got: Any, hint: str = "") -> ConfigError:
    """``<key>: expected <what>, got <value!r> (<hint>)``."""
    reason = f"expected {expected}, got {got!r}" + (f" ({hint})" if hint else "")
    return ConfigError(f"{key}: {reason}", key=key, reason=reason)


def _closest(word: str, candidates) -> str | None:
    candidates = list(candidates)
    folded = [c for c in candidates if c.lower() == word.lower()]
    if folded:
        return folded[0]
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return match[0] if match else None


# ----- the schema -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """One key: its kind of value, what is expected (for messages), a range check, and a hint."""

    kind: str  # "int" | "float" | "str" | "bool" | "path" | "ints"
    expected: str
    ok: Callable[[Any], bool] = lambda v: True
    optional: bool = False  # None allowed: omit the key, or write one of none_words
    none_words: tuple[str, ...] = ("none",)
    choices: tuple[str, ...] = ()
    hint: str = ""


def _int(expected: str = "an integer >= 1", ok=lambda v: v >= 1, **kw) -> _Spec:
    return _Spec("int", expected, ok, **kw)


def _float(expected: str, ok, **kw) -> _Spec:
    return _Spec("float", expected, ok, **kw)


def _choice(choices, **kw) -> _Spec:
    choices = tuple(choices)
    return _Spec("str", "one of " + ", ".join(map(repr, choices)), choices=choices, **kw)


_ACTS = tuple(ACTIVATIONS)
SPECS: dict[str, _Spec] = {
    "model.kind": _choice(MUSEUM),
    "model.x_dim": _int(hint="pixels per image: 784 for 28 x 28 images"),
    "model.z_dims": _Spec(
        "ints",
        "a non-empty list of integers >= 1",
        hint="latent layer sizes from z1 (bottom) to the top, e.g. [360, 360, 360]",
    ),
    "model.K": _int(hint="settling steps per batch; the museum uses 50"),
    "model.beta": _float("a number > 0", lambda v: v > 0, hint="the Euler step of the settling; the museum uses 0.1"),
    "model.leak": _float("a number >= 0", lambda v: v >= 0),
    "model.lmbda": _float('a number >= 0 or "none" (the model\'s default)', lambda v: v >= 0, optional=True),
    "model.phi": _choice(_ACTS, optional=True),
    "model.g_hidden": _choice(_ACTS, optional=True),
    "model.g_out": _choice(_ACTS),
    "model.n_group": _int(hint="units per lateral competition group of the lower latent layers"),
    "model.n_top_group": _int(hint="units per lateral competition group of the top latent layer"),
    "model.alpha_scale": _float(
        "a number", lambda v: True, hint="self-excitation of each unit; a negative value makes it self-inhibition"
    ),
    "model.beta_scale": _float("a number >= 0", lambda v: v >= 0),
    "model.wght_sd": _float("a number > 0", lambda v: v > 0, hint="the initial weights' standard deviation"),
    "model.sigma_rule": _choice(SIGMA_RULES),
    "model.e_init": _choice(
        E_INITS, hint='the learned feedback E: "random" (legacy, drawn apart from W) or "transpose" (W^T)'
    ),
    "model.lateral_form": _choice(
        LATERAL_FORMS,
        hint='how phi(z) V is computed: "matrix" (a matmul, the default) or "grouped" (group sums of the '
        "fixed V, fewer FLOPs, the same values)",
    ),
    "model.solver": _choice(SOLVERS, hint='the settling solver; the museum uses "euler" (docs/config.md)'),
    "model.momentum": _float(
        "a number in [0, 1)", lambda v: 0 <= v < 1, hint='state momentum of the "momentum" and "nesterov" solvers'
    ),
    "model.settle_tol": _float(
        'a number > 0 or "none"',
        lambda v: v > 0,
        optional=True,
        hint="stop settling once a step moves the states by at most this fraction",
    ),
    "model.x_cell": _choice(CELLS, hint="the image layer's error cell; the museum's is \"gaussian\" (docs/config.md)"),
    "model.x_signal": _choice(
        X_SIGNALS,
        hint='the image error sent up: the cell\'s dmu ("mu", the museum\'s) or dmu g_out\'(a) ("pre_activation")',
    ),
    **{
        f"model.{name}": _Spec(
            "bool",
            'true, false or "none" (the kind\'s own)',
            optional=True,
            hint="an ablation of the museum model's structure (docs/config.md)",
        )
        for name in SWITCHES
    },
    "model.legacy_frozen_precision": _Spec(
        "bool",
        "true or false",
        hint="true reproduces legacy ngc-learn >= 0.2, whose settling "
        "kept the first precision (GNCN.md); the default uses the current one",
    ),
    "data.dataset": _Spec("str", "a dataset name", hint="one of " + ", ".join(map(repr, NAMES))),
    "data.n_train": _int('an integer >= 1 or "all"', optional=True, none_words=("all", "none")),
    "data.n_val": _int(hint="validation images split from the training set"),
    "data.train_file": _Spec("path", "a path to a .npy file", optional=True),
    "data.val_file": _Spec("path", "a path to a .npy file", optional=True),
    "data.binarize": _Spec("bool", "true or false"),
    "train.batch_size": _int(hint="images per update; the walkthrough uses 512, the paper 200"),
    "train.eval_batch_size": _int(hint="images per evaluation batch"),
    "train.epochs": _int(),
    "train.patience": _int(
        'an integer >= 1 or "none"',
        optional=True,
        hint='epochs without a better validation BCE before stopping; "none" never stops early',
    ),
    "train.seed": _int(f"an integer in [0, {SEED_MAX}]", lambda v: 0 <= v <= SEED_MAX),
    "train.parallel_trials": _int(
        'an integer >= 1 or "auto"',
        optional=True,
        none_words=("auto", "none"),
        hint="trials vmapped together in one step; auto: all that fit in memory",
    ),
    "optimizer.name": _choice(OPTIMIZERS),
    "optimizer.learning_rate": _float("a number > 0", lambda v: v > 0, hint="the walkthrough uses 0.001"),
    "optimizer.eps": _float("a number > 0", lambda v: v > 0, hint="Keras' and legacy ngc-learn's Adam use 1e-7"),
    "out_dir": _Spec("path", "a path to a folder", optional=True),
}
MODEL_KEYS = tuple(f.name for f in dataclasses.fields(GNCNConfig) if f.name != "flags")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _type_hint(spec: _Spec, value: Any) -> str:
    if isinstance(value, (bool, np.bool_)) and spec.kind in ("int", "float", "ints"):
        return "true/false is not a number"
    if isinstance(value, str) and spec.kind in ("int", "float"):
        try:
            float(value)
            return "write the number without quotes"
        except ValueError:
            pass
    if isinstance(value, str) and spec.kind == "bool" and value.lower() in ("true", "false"):
        return f"write {value.lower()} without quotes"
    if isinstance(value, float) and spec.kind == "int" and value.is_integer():
        return f"write {int(value)} without a decimal point"
    return spec.hint


def _coerce(key: str, spec: _Spec, value: Any) -> Any:
    """Check one value against its spec; return it normalized (ints as int, numbers as float...)."""
    if value is None or (
        spec.optional and spec.kind != "path" and isinstance(value, str) and value.strip().lower() in spec.none_words
    ):
        if spec.optional:
            return None
        raise _bad(key, spec.expected, value, spec.hint)
    if spec.kind == "int":
        if not _is_int(value):
            raise _bad(key, spec.expected, value, _type_hint(spec, value))
        value = int(value)
    elif spec.kind == "float":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise _bad(key, spec.expected, value, _type_hint(spec, value))
        value = float(value)
        if not math.isfinite(value):
            raise _bad(key, spec.expected.replace("a number", "a finite number", 1), value, spec.hint)
    elif spec.kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise _bad(key, spec.expected, value, _type_hint(spec, value))
        value = bool(value)
    elif spec.kind == "str":
        if not isinstance(value, str) or not value:
            raise _bad(key, spec.expected, value, spec.hint)
        if spec.choices and value not in spec.choices:
            near = _closest(value, spec.choices)
            raise _bad(key, spec.expected, value, f"did you mean {near!r}?" if near else spec.hint)
    elif spec.kind == "path":
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value or "\x00" in value:
            raise _bad(key, spec.expected, value, spec.hint)
    elif spec.kind == "ints":
        if not isinstance(value, (list, tuple)) or not value or not all(_is_int(d) and d >= 1 for d in value):
            raise _bad(key, spec.expected, value, spec.hint)
        return tuple(int(d) for d in value)
    if not spec.ok(value):
        raise _bad(key, spec.expected, value, spec.hint)
    return value


def _validate_fields(obj: Any, section: str) -> None:
    for f in dataclasses.fields(obj):
        key = f"{section}.{f.name}"
        object.__setattr__(obj, f.name, _coerce(key, SPECS[key], getattr(obj, f.name)))


# ----- the sections ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """Training data: a built-in dataset (validation split from its training set) or .npy files."""

    dataset: str = "mnist"
    n_train: int | None = None  # None: all remaining training images
    n_val: int = 2000
    train_file: str | None = None
    val_file: str | None = None
    binarize: bool = True

    def __post_init__(self) -> None:
        _validate_fields(self, "data")
        if self.train_file is not None:
            return
        if self.dataset not in NAMES:
            near = _closest(self.dataset, NAMES)
            raise _bad(
                "data.dataset",
                "one of " + ", ".join(map(repr, NAMES)),
                self.dataset,
                (f"did you mean {near!r}? " if near else "")
                + "or set data.train_file to train on your own .npy design matrix",
            )
        if self.val_file is not None:
            raise _bad(
                "data.val_file",
                "no value without data.train_file",
                self.val_file,
                "a built-in dataset's validation images are split from its training set "
                "(data.n_val); set data.train_file too, or drop data.val_file",
            )
        if not self.binarize:
            raise _bad(
                "data.binarize",
                f"true for dataset {self.dataset!r}",
                self.binarize,
                "the built-in datasets are always binarized at 0.5; set data.train_file to train on grey levels",
            )


@dataclass(frozen=True)
class TrainConfig:
    """The training loop: batches, epochs, early stopping and the seed (data split, init, shuffles)."""

    batch_size: int = 512
    eval_batch_size: int = 512
    epochs: int = 100
    patience: int | None = 10  # None: never stop early (the best model is still kept)
    seed: int = 69
    parallel_trials: int | None = None  # None ("auto"): as many trials per vmapped step as memory allows

    def __post_init__(self) -> None:
        _validate_fields(self, "train")


@dataclass(frozen=True)
class OptimizerConfig:
    """The optimizer of the (negated Hebbian) updates: ``keras_adam`` (legacy), ``adam`` or ``sgd``."""

    name: str = "keras_adam"
    learning_rate: float = 1e-3
    eps: float = 1e-7  # Adam's epsilon; unused by sgd

    def __post_init__(self) -> None:
        _validate_fields(self, "optimizer")

    def build(self) -> optax.GradientTransformation:
        """The optax transformation: legacy Keras-form Adam, ``optax.adam`` or ``optax.sgd``."""
        if self.name == "keras_adam":
            return keras_adam(self.learning_rate, eps=self.eps)
        if self.name == "adam":
            return optax.adam(self.learning_rate, eps=self.eps)
        return optax.sgd(self.learning_rate)


def _model_error(err: ValueError) -> ConfigError:
    """GNCNConfig's ``<field>: expected ...`` message as a ConfigError on ``model.<field>``."""
    m = re.match(r"([A-Za-z_]\w*)(\[\d+\])?: (.*)", str(err), re.S)
    if m is None:
        return ConfigError(f"model: {err}", key="model")
    key, label, reason = f"model.{m[1]}", f"model.{m[1]}{m[2] or ''}", m[3]
    if m[1] == "z_dims" and "multiple" in reason:
        reason += (
            " (lateral competition groups the units of the lower latent layers by n_group and"
            " of the top layer by n_top_group: change the layer size or the group size)"
        )
    return ConfigError(f"{label}: {reason}", key=key, label=label, reason=reason)


def model_config(**values: Any) -> GNCNConfig:
    """A :class:`GNCNConfig` from keyword values, type- and range-checked first.

    Errors are :class:`ConfigError` on ``model.<key>``. ``None`` for ``lmbda``, ``phi`` or
    ``g_hidden`` takes the museum model's default.
    """
    for name in values:
        if name not in MODEL_KEYS:
            near = _closest(name, MODEL_KEYS)
            raise ConfigError(
                f"unknown key 'model.{name}'" + (f"; did you mean 'model.{near}'?" if near else ""), key=f"model.{name}"
            )
    checked = {k: _coerce(f"model.{k}", SPECS[f"model.{k}"], v) for k, v in values.items()}
    try:
        return GNCNConfig(**checked)
    except ValueError as err:
        raise _model_error(err) from None


@dataclass(frozen=True)
class FitConfig:
    """Everything ``predcode fit`` needs. ``source`` (the file read) is not compared."""

    model: GNCNConfig = field(default_factory=GNCNConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    out_dir: str | None = None
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name, cls in (
            ("model", GNCNConfig),
            ("data", DataConfig),
            ("train", TrainConfig),
            ("optimizer", OptimizerConfig),
        ):
            value = getattr(self, name)
            if not isinstance(value, cls):
                raise _bad(name, f"a {cls.__name__}", value)
        for name in MODEL_KEYS:  # a GNCNConfig built directly skips the type and range checks
            _coerce(f"model.{name}", SPECS[f"model.{name}"], getattr(self.model, name))
        object.__setattr__(self, "out_dir", _coerce("out_dir", SPECS["out_dir"], self.out_dir))
        if self.source is not None:
            object.__setattr__(self, "source", os.fspath(self.source))
        if self.data.train_file is None and self.model.x_dim != IMAGE_DIM:
            raise _bad(
                "model.x_dim",
                f"{IMAGE_DIM} for dataset {self.data.dataset!r}",
                self.model.x_dim,
                "its images are 28 x 28",
            )


# ----- from a nested dict (the TOML layout) ---------------------------------------------------


def _suggest(name: str) -> str | None:
    """The known key closest to an unknown one: same leaf in another section first, then spelling."""
    leaf = name.rsplit(".", 1)[-1].lower()
    same_leaf = [k for k in SPECS if k.rsplit(".", 1)[-1].lower() == leaf]
    if same_leaf:
        return same_leaf[0]
    return _closest(name, list(SPECS) + list(SECTIONS))


def _unknown(name: str, source: str | None, line: int | None, *, section: bool = False) -> ConfigError:
    if section:
        near = _closest(name, SECTIONS)
        fix = f"did you mean [{near}]?" if near else "the sections are " + ", ".join(f"[{s}]" for s in SECTIONS)
        return ConfigError(
            f"unknown section [{name}] in {_where(source, line)}; {fix}", key=name, source=source, line=line
        )
    near = _suggest(name)
    fix = f"did you mean {near!r}?" if near else "see docs/config.md for the keys"
    if near == "out_dir" and name != near:
        fix += " (top-level keys go before the first [section])"
    return ConfigError(f"unknown key {name!r} in {_where(source, line)}; {fix}", key=name, source=source, line=line)


def _resolve(path: str, base_dir: str | os.PathLike | None) -> str:
    """``path`` with ``~`` expanded, made absolute against ``base_dir`` (default: the working folder)."""
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    base = os.path.abspath(base_dir if base_dir is not None else os.getcwd())
    return os.path.normpath(os.path.join(base, path))


def _from_mapping(
    doc: Any,
    *,
    source: str | None,
    base_dir,
    line_of: Callable[[str], int | None],
    relocate: Callable[[ConfigError], ConfigError],
) -> FitConfig:
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{_where(source)}: expected a table of sections, got {type(doc).__name__}")
    sections: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    top: dict[str, Any] = {}
    for name, value in doc.items():
        name = str(name)
        if name in SECTIONS:
            if not isinstance(value, Mapping):
                raise relocate(_bad(name, f"a table [{name}] of keys", value))
            for key in value:
                if f"{name}.{key}" not in SPECS:
                    raise _unknown(f"{name}.{key}", source, line_of(f"{name}.{key}"))
            sections[name] = dict(value)
        elif name in SPECS:
            top[name] = value
        else:
            raise _unknown(name, source, line_of(name), section=isinstance(value, Mapping))

    def prepared(key: str, value: Any) -> Any:
        spec = SPECS[key]
        value = _coerce(key, spec, value)
        return _resolve(value, base_dir) if spec.kind == "path" and value is not None else value

    try:
        model = model_config(**{k: prepared(f"model.{k}", v) for k, v in sections["model"].items()})
        parts: dict[str, Any] = {
            name: cls(**{k: prepared(f"{name}.{k}", v) for k, v in sections[name].items()})
            for name, cls in (("data", DataConfig), ("train", TrainConfig), ("optimizer", OptimizerConfig))
        }
        out_dir = prepared("out_dir", top["out_dir"]) if "out_dir" in top else None
        return FitConfig(model=model, out_dir=out_dir, source=source, **parts)
    except ConfigError as err:
        raise relocate(err) from None


def config_from_dict(
    doc: Mapping[str, Any], *, source: str | None = None, base_dir: str | os.PathLike | None = None
) -> FitConfig:
    """A FitConfig from a nested dict in the TOML layout (``None`` allowed for optional keys)."""
    return _from_mapping(
        doc,
        source=source,
        base_dir=base_dir,
        line_of=lambda key: None,
        relocate=lambda e: e.located(source) if source is not None else e,
    )


# ----- TOML -----------------------------------------------------------------------------------


def _toml_lines(text: str) -> dict[str, int]:
    """First line of each ``[section]`` and ``key =`` (as dotted keys), for messages only."""
    lines: dict[str, int] = {}
    table = ""
    for n, raw in enumerate(text.split("\n"), start=1):
        s = raw.strip()
        if s.startswith("[") and not s.startswith("[["):
            m = re.match(r"\[([^\[\]]*)\]", s)
            if m:
                table = re.sub(r"[\s\"']", "", m[1])
                lines.setdefault(table, n)
            continue
        m = re.match(r"([\w\-.\"' ]+?)\s*=", s)
        if m:
            key = re.sub(r"[\s\"']", "", m[1])
            lines.setdefault(f"{table}.{key}" if table else key, n)
    return lines


def parse_toml(text: str, source: str | None = None, base_dir: str | os.PathLike | None = None) -> FitConfig:
    """A FitConfig from TOML text; relative paths are taken relative to ``base_dir`` (default: cwd)."""
    try:
        doc = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"line (\d+)", str(err))
        line = int(m[1]) if m else None
        raise ConfigError(
            f"{_where(source, line)}: TOML syntax error: {err} (strings need quotes, e.g. "
            f'kind = "gncn_pdh"; sections are [model], [data], [train], [optimizer])',
            source=source,
            line=line,
        ) from None
    except (ValueError, RecursionError) as err:
        raise ConfigError(f"{_where(source)}: cannot read the TOML: {err}", source=source) from None
    lines = _toml_lines(text)

    def line_of(key: str) -> int | None:
        return lines.get(key, lines.get(key.split(".", 1)[0]))

    def relocate(err: ConfigError) -> ConfigError:
        return err.located(source, line_of(err.key) if err.key else None)

    return _from_mapping(doc, source=source, base_dir=base_dir, line_of=line_of, relocate=relocate)


def _toml_string(s: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for ch in s:
        if ch in escapes:
            out.append(escapes[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)  # shortest round-trip form: "0.001", "1e-07" (both valid TOML)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def config_to_dict(cfg: FitConfig) -> dict[str, Any]:
    """A plain, JSON-able nested dict in the TOML layout (``None`` where a key is unset)."""
    return {
        "out_dir": cfg.out_dir,
        "model": cfg.model.to_dict(),
        "data": dataclasses.asdict(cfg.data),
        "train": dataclasses.asdict(cfg.train),
        "optimizer": dataclasses.asdict(cfg.optimizer),
    }


def dump_toml(cfg: FitConfig) -> str:
    """The config as TOML text with every key written; ``parse_toml(dump_toml(cfg)) == cfg``."""
    lines = ["# predcode fit config (written by predcode.experiments.config.dump_toml; schema: docs/config.md)"]
    if cfg.source is not None:
        lines.append(f"# read from {_toml_string(cfg.source)}")
    d = config_to_dict(cfg)
    if d["out_dir"] is not None:
        lines.append(f"out_dir = {_toml_value(d['out_dir'])}")
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for key, value in d[section].items():
            if value is None:
                spec = SPECS[f"{section}.{key}"]
                if spec.kind == "path":
                    continue  # TOML has no null: an unset path is an omitted key
                value = spec.none_words[0]
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


# ----- the legacy ngc-learn 0.x format --------------------------------------------------------

LEGACY_KEYS: dict[str, str] = {
    "model_type": "model.kind",
    "out_dir": "out_dir",
    "train_xfname": "data.train_file",
    "dev_xfname": "data.val_file",
    "batch_size": "train.batch_size",
    "dev_batch_size": "train.eval_batch_size",
    "eta": "optimizer.learning_rate",
    "num_iter": "train.epochs",
    "seed": "train.seed",
    "K": "model.K",
    "beta": "model.beta",
    "leak": "model.leak",
    "lmbda": "model.lmbda",
    "wght_sd": "model.wght_sd",
    "n_group": "model.n_group",
    "n_top_group": "model.n_top_group",
    "alpha_scale": "model.alpha_scale",
    "beta_scale": "model.beta_scale",
    "z_dim": "model.z_dims",  # every latent layer but the top
    "z_top_dim": "model.z_dims",  # the top latent layer
    "act_fx": "model.phi",
    "out_fx": "model.g_out",
}
LEGACY_MODEL_TYPES: dict[str, str] = {
    "gncn_t1": "gncn_t1",
    "gncn_t1_sigma": "gncn_t1_sigma",
    "gncn_t2_lsigma": "gncn_t2_lsigma",
    "gncn_pdh": "gncn_pdh",
    "gncn_t2_lsigma_pdh": "gncn_pdh",
}
# Keys legacy scripts read that predcode's fit has no use for: named in the error, never ignored.
_LEGACY_UNUSED: dict[str, str] = {
    "use_dfx": "predcode's museum fixes the use of phi'(z) by model kind",
    "x_dim": "legacy took it from the data; predcode's is model.x_dim, 784 for MNIST",
    **dict.fromkeys(
        (
            "model_fname",
            "node_name",
            "cmpt_name",
            "latents_fname",
            "gmm_fname",
            "labels_fname",
            "n_trials",
            "dev_yfname",
            "results_fname",
            "rotNeg90",
        ),
        "it belongs in an analyze.cfg, not in a fit config",
    ),
}
_LEGACY_LAYERS = 3  # legacy museum models have z1, z2 (z_dim units) and z3 (z_top_dim units)
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _legacy_value(name: str, key: str, text: str) -> Any:
    """Convert a legacy string value to the type its predcode key takes."""
    spec = SPECS[key]
    if name == "model_type":
        kind = LEGACY_MODEL_TYPES.get(text.lower().replace("-", "_"))
        if kind is None:
            near = _closest(text, ["GNCN_t1", "GNCN_t1_Sigma", "GNCN_t2_LSigma", "GNCN_PDH", "GNCN_t2_LSigma_PDH"])
            raise _bad(
                key,
                "one of GNCN_t1, GNCN_t1_Sigma, GNCN_t2_LSigma, GNCN_PDH, GNCN_t2_LSigma_PDH (any case)",
                text,
                f"did you mean {near!r}?" if near else "",
            )
        return kind
    kind = "int" if spec.kind == "ints" else spec.kind
    if kind == "int":
        if _INT.fullmatch(text):
            try:
                return int(text)
            except ValueError:  # more digits than Python converts
                pass
        raise _bad(key, spec.expected if spec.kind == "int" else "an integer >= 1", text, spec.hint)
    if kind == "float":
        if _FLOAT.fullmatch(text):
            return float(text)
        raise _bad(key, spec.expected, text, spec.hint)
    return text  # str and path values are taken as written


def parse_legacy(text: str, source: str | None = None, base_dir: str | os.PathLike | None = None) -> FitConfig:
    """A FitConfig from legacy ngc-learn 0.x ``name = value`` text (Walkthrough 1's ``fit.cfg``).

    Spaces are ignored, ``#`` starts a comment, a later duplicate key wins, and relative paths are
    relative to ``base_dir`` (default: the current working folder, as in legacy). Legacy's
    hard-coded early-stopping patience of 10 and its Keras Adam are the defaults. Unknown keys
    (including ones legacy read but predcode's fit has no use for, such as ``use_dfx``) are errors.
    """
    entries: dict[str, tuple[str, int]] = {}
    for n, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = "".join(raw.split("#", 1)[0].split())
        if not line:
            continue
        if "=" not in line:
            fix = (
                "this looks like TOML: give the file a .toml suffix"
                if line.startswith("[")
                else "a legacy config holds one `name = value` a line; comments start with #"
            )
            raise ConfigError(
                f"{_where(source, n)}: expected `name = value`, got {raw.strip()!r} ({fix})", source=source, line=n
            )
        name, value = line.split("=", 1)
        if not name:
            raise ConfigError(
                f"{_where(source, n)}: expected a name before '=', got {raw.strip()!r}", source=source, line=n
            )
        if "=" in value:
            raise ConfigError(
                f"{_where(source, n)}: expected one '=' in `name = value`, got {raw.strip()!r} "
                f"(legacy ngc-learn would have read the value as {value.split('=')[0]!r})",
                key=name,
                source=source,
                line=n,
            )
        if name not in LEGACY_KEYS:
            near = _closest(name, LEGACY_KEYS)
            fix = f"did you mean {near!r}?" if near else "legacy keys: " + ", ".join(LEGACY_KEYS)
            if name in _LEGACY_UNUSED:
                fix = (
                    f"legacy ngc-learn read it, but predcode's fit has no use for it ({_LEGACY_UNUSED[name]}): "
                    "remove the line" + (f"; the closest known key is {near!r}" if near else "")
                )
            raise ConfigError(f"unknown key {name!r} in {_where(source, n)}; {fix}", key=name, source=source, line=n)
        entries[name] = (value, n)

    doc: dict[str, Any] = {s: {} for s in SECTIONS}
    origin: dict[str, tuple[str, int]] = {}  # predcode key or label -> (legacy name, line)
    default = GNCNConfig().z_dims
    z_dims = [default[0]] * (_LEGACY_LAYERS - 1) + [default[-1]]
    for name, (value, n) in entries.items():
        key = LEGACY_KEYS[name]
        try:
            converted = _legacy_value(name, key, value)
        except ConfigError as err:
            raise err.located(source, n, label=f"{name} ({key})") from None
        if name == "z_dim":
            z_dims[:-1] = [converted] * (_LEGACY_LAYERS - 1)
            origin.update({f"model.z_dims[{i}]": (name, n) for i in range(_LEGACY_LAYERS - 1)})
            origin.setdefault("model.z_dims", (name, n))
        elif name == "z_top_dim":
            z_dims[-1] = converted
            origin[f"model.z_dims[{_LEGACY_LAYERS - 1}]"] = origin["model.z_dims"] = (name, n)
        else:
            section, _, leaf = key.rpartition(".")
            (doc[section] if section else doc)[leaf] = converted
            origin[key] = (name, n)
    doc["model"]["z_dims"] = z_dims

    def relocate(err: ConfigError) -> ConfigError:
        found = origin.get(err.label or "") or origin.get(err.key or "")
        if found is None:
            return err.located(source)
        return err.located(source, found[1], label=f"{found[0]} ({err.label})")

    return _from_mapping(doc, source=source, base_dir=base_dir, line_of=lambda key: None, relocate=relocate)


# ----- files and overrides --------------------------------------------------------------------

CONFIG_SUFFIXES = (".toml", ".cfg")


def shipped_configs_dir() -> Path:
    """The configs shipped with predcode: ``predcode/configs/`` of an installed wheel, else ``configs/``
    at the top of the source checkout (editable installs)."""
    packaged = resources.files("predcode") / "configs"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[3] / "configs"


def shipped_configs() -> list[str]:
    """Names of the shipped configs, such as ``mnist/gncn_pdh`` (``predcode fit --config mnist/gncn_pdh``)."""
    root = shipped_configs_dir()
    if not root.is_dir():
        return []
    return sorted(
        p.relative_to(root).with_suffix("").as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix in CONFIG_SUFFIXES
    )


def find_config(name: str | os.PathLike) -> tuple[Path, str | None]:
    """``(file, shipped name or None)``: ``name`` itself if that file exists, else the shipped config so named.

    A shipped config is named by its path below the configs folder, with or without its suffix and
    an optional leading ``configs/``: ``mnist/gncn_pdh``, ``mnist/paper/gncn_t1.toml``,
    ``legacy/gncn_pdh_fit``. A name that matches nothing comes back as ``(Path(name), None)``.
    """
    p = Path(name)
    if p.exists() or p.is_absolute() or ".." in p.parts:
        return p, None
    key = p.as_posix().removeprefix("configs/")
    root = shipped_configs_dir()
    for candidate in (key, *(key + suffix for suffix in CONFIG_SUFFIXES)):
        path = root / candidate
        if path.suffix in CONFIG_SUFFIXES and path.is_file():
            return path, path.relative_to(root).with_suffix("").as_posix()
    return p, None


def load_config(path: str | os.PathLike) -> FitConfig | PCFitConfig:
    """Read a config file: ``*.toml`` as TOML (paths relative to its folder), anything else as legacy.

    A TOML file with a ``[network]`` table is a general PC network config and gives a
    :class:`~predcode.experiments.pc_config.PCFitConfig`; any other config gives a :class:`FitConfig`.

    ``path`` may also name a config shipped with predcode (:func:`shipped_configs`), such as
    ``"mnist/gncn_pdh"``; its run folder (``out_dir``) is then ``runs/<name>`` below the working folder.
    """
    p, shipped = find_config(path)
    source = os.path.abspath(p)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        names = ", ".join(shipped_configs()) or "none found"
        raise ConfigError(
            f"config file not found: {source} (check the path, or name a config shipped with predcode: {names})",
            source=source,
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: expected a config file, got a folder", source=source) from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{source}: expected UTF-8 text, got undecodable bytes ({err.reason} at byte {err.start})", source=source
        ) from None
    except OSError as err:
        raise ConfigError(f"{source}: cannot read the config file ({err.strerror or err})", source=source) from None
    from predcode.experiments.pc_config import is_pc_toml, parse_pc_toml  # imports this module

    cfg: FitConfig | PCFitConfig
    if p.suffix.lower() == ".toml" and is_pc_toml(text):  # a [network] table: a general PC network
        cfg = parse_pc_toml(text, source, base_dir=os.path.dirname(source))
    elif p.suffix.lower() == ".toml":
        cfg = parse_toml(text, source, base_dir=os.path.dirname(source))
    else:
        cfg = parse_legacy(text, source)
    if shipped is not None:  # its own out_dir points next to the package, not to the user's folder
        cfg = dataclasses.replace(cfg, out_dir=os.path.abspath(Path("runs") / shipped))
    return cfg


def with_overrides(cfg: FitConfig, **dotted: Any) -> FitConfig:
    """A copy of ``cfg`` with dotted keys replaced, validated: ``with_overrides(cfg, **{"train.epochs": 2})``.

    Relative paths are taken relative to the working folder. Changing ``model.kind`` re-derives
    ``phi``, ``g_hidden`` and ``lmbda`` from the new kind unless they were set apart from the old
    kind's defaults or are overridden too.
    """
    doc = config_to_dict(cfg)
    new_kind = dotted.get("model.kind", cfg.model.kind)
    if new_kind != cfg.model.kind:
        old = MUSEUM[cfg.model.kind]
        for name in ("phi", "g_hidden", "lmbda"):
            if f"model.{name}" not in dotted and doc["model"][name] == old[name]:
                doc["model"][name] = None
    for key, value in dotted.items():
        if key not in SPECS:
            raise _unknown(key, "overrides", None)
        section, _, leaf = key.rpartition(".")
        (doc[section] if section else doc)[leaf] = value
    return _from_mapping(doc, source=cfg.source, base_dir=None, line_of=lambda key: None, relocate=lambda e: e)


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=2"`` -> ``("train.epochs", 2)``: the value is read as a TOML value, else as a string."""
    key, eq, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not eq or not key:
        raise ConfigError(f"expected `section.key=value`, got {text!r} (e.g. train.epochs=2)")
    if key not in SPECS:
        raise _unknown(key, "overrides", None)
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except (ValueError, RecursionError):
        return key, value
