"""The TOML layout of every family: one reader (with line numbers and did-you-mean), one TOML writer,
one ``--set`` parser, and the dispatch from a document's tables to its family."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from predcode.experiments.config.mlp import MLPFitConfig
from predcode.experiments.config.museum import FitConfig
from predcode.experiments.config.network import PCFitConfig
from predcode.experiments.config.sections import family_specs, tables
from predcode.schema import ConfigError, bad, closest, coerce, where

__all__ = [
    "AnyConfig",
    "FAMILIES",
    "config_from_dict",
    "config_to_dict",
    "dump_toml",
    "family_of",
    "parse_override",
    "parse_toml",
    "toml_family",
    "with_overrides",
]

AnyConfig = FitConfig | PCFitConfig | MLPFitConfig
FAMILIES: dict[str, type[Any]] = {"gncn": FitConfig, "pc": PCFitConfig, "mlp": MLPFitConfig}


def family_of(doc: Any) -> type[Any]:
    """The config class of a document in the TOML layout: a ``[network]`` table is a PC network, a
    ``[model]`` table with a ``family`` key an MLP, anything else a museum model."""
    if isinstance(doc, Mapping) and "network" in doc:
        return PCFitConfig
    model = doc.get("model") if isinstance(doc, Mapping) else None
    if isinstance(model, Mapping) and "family" in model:
        return MLPFitConfig
    return FitConfig


def _suggest(name: str, cls: type) -> str | None:
    """The known key closest to an unknown one: the same leaf in another section, else the closest
    leaf of the same section."""
    known = family_specs(cls)
    section, _, leaf = name.rpartition(".")
    same_leaf = [k for k in known if k.rsplit(".", 1)[-1].lower() == leaf.lower()]
    if same_leaf:
        return same_leaf[0]
    siblings = {k.rsplit(".", 1)[-1]: k for k in known if k.rpartition(".")[0] == section}
    near = closest(leaf, siblings)
    return siblings[near] if near else None


def _unknown(name: str, cls: type[Any], source: str | None, line: int | None, *, section: bool = False) -> ConfigError:
    names = list(tables(cls))
    if section:
        near = closest(name, names)
        fix = f"did you mean [{near}]?" if near else "the sections are " + ", ".join(f"[{s}]" for s in names)
        return ConfigError(
            f"unknown section [{name}] in {where(source, line)}; {fix}", key=name, source=source, line=line
        )
    near = _suggest(name, cls)
    section_name = name.rpartition(".")[0]
    if near:
        fix = f"did you mean {near!r}?" + (" (top-level keys go before the first [section])" if "." not in near else "")
    elif section_name in names:
        fix = f"[{section_name}] takes " + ", ".join(sorted(tables(cls)[section_name].keys))
    elif "." in name:
        fix = f"{cls.title} has the sections " + ", ".join(f"[{s}]" for s in names) + " (docs/config.md)"
    else:
        fix = "see docs/config.md for the keys"
    return ConfigError(f"unknown key {name!r} in {where(source, line)}; {fix}", key=name, source=source, line=line)


def _resolve(path: str, base_dir: str | os.PathLike | None) -> str:
    """``path`` with ``~`` expanded, made absolute against ``base_dir`` (default: the working folder)."""
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    base = os.path.abspath(base_dir if base_dir is not None else os.getcwd())
    return os.path.normpath(os.path.join(base, path))


def from_mapping(
    doc: Any,
    *,
    source: str | None,
    base_dir: str | os.PathLike | None,
    line_of: Callable[[str], int | None] = lambda key: None,
    relocate: Callable[[ConfigError], ConfigError] = lambda e: e,
    cls: type | None = None,
) -> Any:
    """The config a nested dict in the TOML layout describes (its family from its tables unless ``cls``)."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where(source)}: expected a table of sections, got {type(doc).__name__}")
    cls = cls or family_of(doc)
    known, sections = family_specs(cls), tables(cls)
    values: dict[str, dict[str, Any]] = {name: {} for name in sections}
    top: dict[str, Any] = {}
    for name, value in doc.items():
        name = str(name)
        if name in sections:
            if not isinstance(value, Mapping):
                raise relocate(bad(name, f"a table [{name}] of keys", value))
            for key in value:
                if f"{name}.{key}" not in known:
                    raise _unknown(f"{name}.{key}", cls, source, line_of(f"{name}.{key}"))
            values[name] = dict(value)
        elif name in known:
            top[name] = value
        else:
            raise _unknown(name, cls, source, line_of(name), section=isinstance(value, Mapping))

    def prepared(key: str, value: Any) -> Any:
        spec = known[key]
        value = coerce(key, spec, value)
        return _resolve(value, base_dir) if spec.kind == "path" and value is not None else value

    try:
        parts = {
            name: t.cls(**{**t.defaults, **{k: prepared(f"{name}.{k}", v) for k, v in values[name].items()}})
            for name, t in sections.items()
        }
        parts.update({k: prepared(k, v) for k, v in top.items()})
        return cls(**parts, source=source)
    except ConfigError as err:
        raise relocate(err) from None


def config_from_dict(
    doc: Mapping[str, Any], *, source: str | None = None, base_dir: str | os.PathLike | None = None
) -> AnyConfig:
    """A config from a nested dict in the TOML layout (``None`` allowed for optional keys)."""
    return from_mapping(doc, source=source, base_dir=base_dir, relocate=lambda e: e.located(source) if source else e)


def config_to_dict(cfg: AnyConfig) -> dict[str, Any]:
    """A plain, JSON-able nested dict in the TOML layout: every key the family serves (``None`` where unset)."""
    d: dict[str, Any] = {"out_dir": cfg.out_dir}
    for name, t in tables(type(cfg)).items():
        section = getattr(cfg, name)
        d[name] = {k: _plain(getattr(section, k)) for k in t.keys}
    return d


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


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


def _read_toml(text: str, source: str | None) -> dict[str, Any]:
    try:
        return tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"line (\d+)", str(err))
        line = int(m[1]) if m else None
        raise ConfigError(
            f"{where(source, line)}: TOML syntax error: {err} (strings need quotes, e.g. "
            f'kind = "gncn_pdh"; sections are [model], [data], [train], [optimizer])',
            source=source,
            line=line,
        ) from None
    except (ValueError, RecursionError) as err:
        raise ConfigError(f"{where(source)}: cannot read the TOML: {err}", source=source) from None


def parse_toml(text: str, source: str | None = None, base_dir: str | os.PathLike | None = None) -> Any:
    """The config TOML text describes, of its family; relative paths are relative to ``base_dir`` (default: cwd)."""
    doc = _read_toml(text, source)
    lines = _toml_lines(text)

    def line_of(key: str) -> int | None:
        return lines.get(key, lines.get(key.split(".", 1)[0]))

    def relocate(err: ConfigError) -> ConfigError:
        return err.located(source, line_of(err.key) if err.key else None)

    return from_mapping(doc, source=source, base_dir=base_dir, line_of=line_of, relocate=relocate)


def toml_family(text: str) -> str | None:
    """``"gncn"``, ``"pc"`` or ``"mlp"``: the family of TOML text (``None`` when it is not TOML)."""
    try:
        doc = tomllib.loads(text.removeprefix("\ufeff"))
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):
        return None
    return family_of(doc).family


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


def dump_toml(cfg: AnyConfig) -> str:
    """The config as TOML text with every key its family serves; ``parse_toml(dump_toml(cfg)) == cfg``."""
    lines = ["# predcode fit config (written by predcode.experiments.config.dump_toml; schema: docs/config.md)"]
    if cfg.source is not None:
        lines.append(f"# read from {_toml_string(cfg.source)}")
    d = config_to_dict(cfg)
    if d["out_dir"] is not None:
        lines.append(f"out_dir = {_toml_value(d['out_dir'])}")
    known = family_specs(type(cfg))
    for section in tables(type(cfg)):
        lines += ["", f"[{section}]"]
        for key, value in d[section].items():
            if value is None:
                spec = known[f"{section}.{key}"]
                if spec.kind == "path":
                    continue  # TOML has no null: an unset path is an omitted key
                value = spec.none_words[0]
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def with_overrides(cfg: Any, **dotted: Any) -> Any:
    """A copy of ``cfg`` with dotted keys replaced, validated: ``with_overrides(cfg, **{"train.epochs": 2})``.

    Relative paths are taken relative to the working folder. For a museum model, changing
    ``model.kind`` re-derives ``phi``, ``g_hidden`` and ``lmbda`` from the new kind unless they were
    set apart from the old kind's defaults or are overridden too.
    """
    cls = type(cfg)
    doc = config_to_dict(cfg)
    if hasattr(cls, "rebase"):
        cls.rebase(cfg, doc, dotted)
    known = family_specs(cls)
    for key, value in dotted.items():
        if key not in known:
            raise _unknown(key, cls, "overrides", None)
        section, _, leaf = key.rpartition(".")
        (doc[section] if section else doc)[leaf] = value
    return from_mapping(doc, source=cfg.source, base_dir=None, cls=cls)


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=2"`` -> ``("train.epochs", 2)``: the value is read as a TOML value, else as a string.

    The key must be one some family takes; :func:`with_overrides` checks it against the config's own.
    """
    key, eq, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not eq or not key:
        raise ConfigError(f"--set: expected `section.key=value`, got {text!r} (e.g. train.epochs=2)")
    if not any(key in family_specs(cls) for cls in FAMILIES.values()):
        raise _unknown(key, FitConfig, "overrides", None)
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except (ValueError, RecursionError):
        return key, value
