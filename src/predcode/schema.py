"""Config fields declared once (type, range or choices, default, help) and the one validator that reads them.

A config dataclass declares each field with :func:`setting`; its ``__post_init__`` calls
:func:`validate`, which checks and normalizes every declared field (ints as ``int``, numbers as
``float``, lists as tuples) and raises :class:`ConfigError` naming ``<section>.<field>``, what was
expected, what was got and a hint::

    @dataclass(frozen=True)
    class TrainConfig:
        SECTION: ClassVar[str] = "train"
        epochs: int = setting(100, "int", low=1, high=10**6, resume="safe", help="passes over the training set")

        def __post_init__(self) -> None:
            validate(self)

Values read from a file or ``--set`` go through :func:`coerce` with ``words=True`` first: optional
fields then also take the words ``"none"`` (or ``"all"``, ``"auto"``) and messages name them so.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from predcode.limits import MAX_BATCH, MAX_DIM, MAX_EPOCHS, MAX_LAYERS, MAX_ROWS, MAX_STEPS, MAX_TRIALS

__all__ = [
    "MAX_BATCH",
    "MAX_DIM",
    "MAX_EPOCHS",
    "MAX_LAYERS",
    "MAX_ROWS",
    "MAX_STEPS",
    "MAX_TRIALS",
    "RESUME",
    "ConfigError",
    "Spec",
    "bad",
    "check_int",
    "closest",
    "coerce",
    "setting",
    "spec_of",
    "specs",
    "validate",
]


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
            f"{where(source, line)}: {body}", key=self.key, label=label, reason=self.reason, source=source, line=line
        )


def where(source: str | None, line: int | None = None) -> str:
    """``cfg.toml, line 3`` (``<config>`` for text that came from no file)."""
    name = source if source is not None else "<config>"
    return name if line is None else f"{name}, line {line}"


def bad(key: str, expected: str, got: Any, hint: str = "", *, label: str | None = None) -> ConfigError:
    """``<label>: expected <what>, got <value!r> (<hint>)``; ``label`` (default ``key``) may add an index."""
    reason = f"expected {expected}, got {got!r}" + (f" ({hint})" if hint else "")
    label = label or key
    return ConfigError(f"{label}: {reason}", key=key, label=label, reason=reason)


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` most likely meant: the same word in another case, else the nearest spelling."""
    candidates = list(candidates)
    folded = [c for c in candidates if c.lower() == word.lower()]
    if folded:
        return folded[0]
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return match[0] if match else None


RESUME = ("safe", "history", "schedule")  # what changing a key does to a resumed run (Spec.resume)


@dataclass(frozen=True)
class Spec:
    """What one field takes: ``kind`` of value, a range or choices, whether ``None`` is allowed, and help.

    ``kind`` is ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"path"``, ``"ints"`` (a list of
    ``min_len`` to ``max_len`` integers in ``[1, high]``) or ``"strs"`` (a list of names). ``resume`` says what a
    change of the value does to a run that is resumed with it (:data:`RESUME`): ``"safe"`` (the
    epochs already trained stay what they were: ``train.epochs``, ``train.patience``),
    ``"history"`` (they would become meaningless: data, model, optimizer, seed; ``--resume``
    refuses the change) or ``"schedule"`` (safe unless ``optimizer.schedule`` is ``"cosine"``,
    whose decay spans the whole training).
    ``low``/``high`` bound numbers (``open_low``/``open_high``: strictly); every integer setting
    must declare ``high`` (the ``MAX_*`` bounds of this module), so no value passes the check
    only to overflow a shape or loop counter later. ``optional`` allows ``None``, written in a file
    as the first of ``none_words``; ``none_means`` says what it means. ``expected`` replaces the
    generated description of the valid values.
    """

    kind: str
    resume: str = ""
    help: str = ""
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False
    none_words: tuple[str, ...] = ("none",)
    none_means: str = ""
    min_len: int = 1
    max_len: int = MAX_LAYERS
    expected: str = ""

    def __post_init__(self) -> None:
        if self.kind in ("int", "ints") and self.high is None:
            raise TypeError(f"an integer setting needs an upper bound (high=...), got kind {self.kind!r} without one")
        if self.resume not in RESUME:
            raise TypeError(f"Spec.resume: expected one of {', '.join(map(repr, RESUME))}, got {self.resume!r}")

    def describe(self, *, words: bool = True) -> str:
        """The valid values in words: ``an integer >= 1 or "none"`` (``or None`` when ``words`` is false)."""
        text = self.expected or self._base()
        if self.optional and self.kind != "path":
            none = f'"{self.none_words[0]}"' if words else "None"
            text = f"true, false or {none}" if self.kind == "bool" else f"{text} or {none}"
            if self.none_means:
                text += f" ({self.none_means})"
        return text

    def _base(self) -> str:
        if self.choices:
            return "one of " + ", ".join(map(repr, self.choices))
        noun = {"int": "an integer", "float": "a number"}.get(self.kind)
        if noun is None:
            return {
                "bool": "true or false",
                "str": "a string",
                "path": "a path",
                "ints": (
                    f"a non-empty list of at most {self.max_len}"
                    if self.min_len <= 1
                    else f"a list of {self.min_len} to {self.max_len}"
                )
                + f" integers in [1, {_num(self.high if self.high is not None else 1)}]",
                "strs": "a list of names",
            }[self.kind]
        if self.low is not None and self.high is not None:
            left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
            return f"{noun} in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{noun} {'>' if self.open_low else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{noun} {'<' if self.open_high else '<='} {_num(self.high)}"
        return noun

    def in_range(self, v: float) -> bool:
        """Whether number ``v`` lies within ``low`` and ``high``."""
        if self.low is not None and (v <= self.low if self.open_low else v < self.low):
            return False
        return self.high is None or (v < self.high if self.open_high else v <= self.high)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def setting(default: Any, kind: str, *, resume: str, **spec: Any) -> Any:
    """A dataclass field with its :class:`Spec` (``help``, ``low``, ``choices``, ...) in its metadata.

    ``resume`` (required, so that no key goes unclassified) is ``"safe"``, ``"history"`` or
    ``"schedule"``: what changing the key on ``--resume`` does (:class:`Spec`).
    """
    return dataclasses.field(default=default, metadata={"spec": Spec(kind, resume=resume, **spec)})


def spec_of(f: dataclasses.Field) -> Spec | None:
    """The :class:`Spec` a field was declared with, or ``None`` for a field that is not a setting."""
    return f.metadata.get("spec")


def specs(cls: Any) -> dict[str, Spec]:
    """Every declared setting of a config dataclass, by field name, in declaration order."""
    return {f.name: s for f in dataclasses.fields(cls) if (s := spec_of(f)) is not None}


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _type_hint(spec: Spec, value: Any) -> str:
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
    return spec.help


def coerce(key: str, spec: Spec, value: Any, *, words: bool = True) -> Any:
    """Check one value against its spec; return it normalized (ints as int, numbers as float, lists as tuples).

    ``words`` says the value came from a file or ``--set``: messages then write ``None`` as
    ``"none"``. Raises :class:`ConfigError` on ``key``.
    """
    expected = spec.describe(words=words)
    if value is None or (
        spec.optional and spec.kind != "path" and isinstance(value, str) and value.strip().lower() in spec.none_words
    ):
        if spec.optional:
            return None
        raise bad(key, expected, value, spec.help)
    if spec.kind == "int":
        if not _is_int(value):
            raise bad(key, expected, value, _type_hint(spec, value))
        value = int(value)
    elif spec.kind == "float":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise bad(key, expected, value, _type_hint(spec, value))
        value = float(value)
        if not math.isfinite(value):
            raise bad(key, expected.replace("a number", "a finite number", 1), value, spec.help)
    elif spec.kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise bad(key, expected, value, _type_hint(spec, value))
        return bool(value)
    elif spec.kind == "str":
        if not isinstance(value, str) or not value:
            raise bad(key, expected, value, spec.help)
        if spec.choices and value not in spec.choices:
            near = closest(value, spec.choices)
            raise bad(key, expected, value, f"did you mean {near!r}?" if near else spec.help)
        return value
    elif spec.kind == "path":
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value or "\x00" in value:
            raise bad(key, expected, value, spec.help)
        return value
    elif spec.kind == "ints":
        if (
            not isinstance(value, (list, tuple))
            or not spec.min_len <= len(value) <= spec.max_len
            or not all(_is_int(d) and 1 <= d <= (spec.high if spec.high is not None else d) for d in value)
        ):
            raise bad(key, expected, value, spec.help)
        return tuple(int(d) for d in value)
    elif spec.kind == "strs":
        if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) and s for s in value):
            raise bad(key, expected, value, spec.help)
        return tuple(value)
    if not spec.in_range(value):
        raise bad(key, expected, value, spec.help)
    return value


def check_int(
    name: str, value: Any, low: int, high: int, hint: str = "", *, optional: bool = False, error: type = ValueError
) -> Any:
    """An integer argument of the API checked against ``[low, high]`` (the bounds of the config's settings).

    Returns ``int(value)`` (``None`` too when ``optional``) or raises ``error`` (``ValueError`` or
    a subclass) with the message a config setting gives: ``name: expected an integer in [low,
    high], got value (hint)``.
    """
    # an API argument, not a run's setting: its resume class is never read
    spec = Spec("int", help=hint, low=low, high=high, optional=optional, resume="safe")
    try:
        return coerce(name, spec, value, words=False)
    except ConfigError as err:
        if error is ConfigError:
            raise
        raise error(str(err)) from None


def validate(obj: Any) -> None:
    """Check and normalize, in place, every declared setting of a frozen config dataclass.

    Keys in messages are ``<obj.SECTION>.<field>`` (just ``<field>`` for a class without ``SECTION``).
    """
    prefix = getattr(obj, "SECTION", "")
    for name, spec in specs(type(obj)).items():
        key = f"{prefix}.{name}" if prefix else name
        object.__setattr__(obj, name, coerce(key, spec, getattr(obj, name), words=False))
