"""The documentation: every public function and class has a docstring, and the site builds strictly."""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "predcode"


def public_modules() -> list[str]:
    """Every module under src/predcode whose dotted path has no part starting with ``_``."""
    names = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(p.startswith("_") for p in parts):
            names.append(".".join(parts))
    return names


def _auto_doc(obj, doc: str | None) -> bool:
    """True when ``doc`` is missing or only the signature line that namedtuple/dataclass generate."""
    if not doc or not doc.strip():
        return True
    name = getattr(obj, "__name__", "")
    return inspect.isclass(obj) and "\n" not in doc.strip() and doc.startswith(f"{name}(") and doc.endswith(")")


def public_objects(module_name: str):
    """(qualified name, object) for the module's public functions and classes and their public methods.

    Public: listed in ``__all__`` when the module has one, else a name without a leading underscore
    defined in the module itself (re-exports are checked where they are defined).
    """
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    for name, obj in vars(module).items():
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if exported is not None:
            if name not in exported or getattr(obj, "__module__", None) != module_name:
                continue
        elif name.startswith("_") or getattr(obj, "__module__", None) != module_name:
            continue
        yield f"{module_name}.{name}", obj
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if isinstance(member, property):
                    yield f"{module_name}.{name}.{attr}", member
                elif inspect.isfunction(member):
                    yield f"{module_name}.{name}.{attr}", getattr(obj, attr)


def test_every_public_function_and_class_has_a_docstring():
    missing = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        if not (module.__doc__ or "").strip():
            missing.append(f"{module_name} (module)")
        for qualname, obj in public_objects(module_name):
            if _auto_doc(obj, inspect.getdoc(obj)):
                missing.append(qualname)
    assert not missing, "public names without a docstring:\n  " + "\n  ".join(missing)


def test_the_docstring_check_sees_a_missing_docstring(tmp_path, monkeypatch):
    """The check above is not vacuous: an undocumented function, method or NamedTuple is caught."""
    (tmp_path / "undocumented_mod.py").write_text(
        '"""A module."""\nfrom typing import NamedTuple\n\n__all__ = ["f", "C", "T"]\n\n'
        "def f():\n    pass\n\nclass C:\n    '''A class.'''\n    def m(self):\n        pass\n\n"
        "class T(NamedTuple):\n    a: int\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = {q for q, obj in public_objects("undocumented_mod") if _auto_doc(obj, inspect.getdoc(obj))}
    assert found == {"undocumented_mod.f", "undocumented_mod.C.m", "undocumented_mod.T"}


@pytest.mark.slow
def test_docs_site_builds_strictly_with_every_generated_page(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[docs]') is not installed")
    pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings[python] is not installed")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cli = (site / "cli" / "index.html").read_text()
    from predcode.cli import app

    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        assert f"predcode {name}" in cli, f"the CLI page lacks `predcode {name}`"
    for module in public_modules():
        if module not in ("predcode.cli", "predcode.__main__"):
            assert (site / "api" / module / "index.html").is_file(), f"no API page for {module}"
    for example in (ROOT / "examples").glob("*.py"):
        assert (site / "examples" / example.stem / "index.html").is_file(), f"no page for {example.name}"
    assert "GNCN-PDH" in (site / "concepts" / "index.html").read_text()
    for page in ("config", "checkpoint-format", "getting-started", "changelog", "tracking"):
        assert (site / page / "index.html").is_file(), page
    # the example pages show their figures, and the figures are in the site
    assert (site / "img" / "walkthrough1" / "samples.png").is_file()
    # the notebooks are pages, with their stored outputs (figures as inline PNGs, the printed lines)
    for notebook in (ROOT / "docs" / "notebooks").glob("*.ipynb"):
        page = site / "notebooks" / notebook.stem / "index.html"
        assert page.is_file(), f"no page for {notebook.name}"
        html = page.read_text()
        shown = 'src="data:image/png;base64' in html and "SUMMARY {" in html  # a figure and the printed line
        assert shown, f"{notebook.name} is shown without its outputs"
    shutil.rmtree(site)
