"""Config files: the configs shipped with predcode, and :func:`load_config` for TOML and legacy files."""

from __future__ import annotations

import dataclasses
import os
from importlib import resources
from pathlib import Path
from typing import Any

from predcode.experiments.config.layout import parse_toml
from predcode.experiments.config.legacy import parse_legacy
from predcode.schema import ConfigError

__all__ = ["CONFIG_SUFFIXES", "find_config", "load_config", "shipped_configs", "shipped_configs_dir"]

CONFIG_SUFFIXES = (".toml", ".cfg")


def shipped_configs_dir() -> Path:
    """The configs shipped with predcode: ``predcode/configs/`` of an installed wheel, else ``configs/``
    at the top of the source checkout (editable installs)."""
    packaged = resources.files("predcode") / "configs"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[4] / "configs"


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


def load_config(path: str | os.PathLike) -> Any:
    """Read a config file: ``*.toml`` as TOML (paths relative to its folder), anything else as legacy.

    The family follows the tables (:func:`family_of`): a :class:`FitConfig` (museum model), a
    :class:`PCFitConfig` (``[network]``) or an :class:`MLPFitConfig` (``[model] family = "mlp"``).
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
    if p.suffix.lower() == ".toml":
        cfg = parse_toml(text, source, base_dir=os.path.dirname(source))
    else:
        cfg = parse_legacy(text, source)
    if shipped is not None:  # its own out_dir points next to the package, not to the user's folder
        cfg = dataclasses.replace(cfg, out_dir=os.path.abspath(Path("runs") / shipped))
    return cfg
