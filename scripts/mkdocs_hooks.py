"""mkdocs hooks: pages generated at build time, so that none of them can drift from the code.

* ``cli.md``: every ``predcode`` command with its options, read from the typer app itself;
* ``api/<module>.md``: one mkdocstrings page per public module under ``src/predcode`` (a module
  whose name starts with ``_`` is private, ``cli`` is covered by the CLI page);
* ``examples/<name>.md``: each script under ``examples/``, its docstring as the prose and the
  code below it;
* ``changelog.md``: ``CHANGELOG.md`` from the top of the checkout.

The nav entries "API reference" and "Examples" of ``mkdocs.yml`` are filled in here.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "predcode"
EXAMPLES = ROOT / "examples"
SKIP_MODULES = {"predcode.cli", "predcode.__main__"}


def public_modules() -> list[str]:
    """Dotted names of the public modules of predcode, packages first, in file order."""
    names = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts):
            continue
        name = ".".join(parts)
        if name not in SKIP_MODULES:
            names.append(name)
    return sorted(names, key=lambda n: (n.count("."), n) if n == "predcode" else (1, n))


def example_scripts() -> list[Path]:
    """The example scripts, in name order."""
    return sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def _api_page(module: str) -> str:
    if module == "predcode":
        return (
            "# predcode\n\nThe names exported by the top-level package; each links to its module's page.\n\n"
            "::: predcode\n    options:\n      members: false\n      show_root_heading: false\n\n" + _exports_table()
        )
    return f"# {module}\n\n::: {module}\n"


def _exports_table() -> str:
    import predcode

    rows = ["| name | defined in |", "|---|---|"]
    for name in predcode.__all__:
        if name.startswith("_"):
            continue
        obj = getattr(predcode, name)
        home = getattr(obj, "__module__", None)
        if home is None or not home.startswith("predcode") or not hasattr(obj, "__qualname__"):
            rows.append(f"| `{name}` | `predcode` |")
            continue
        target = f"{home}.{obj.__qualname__}"
        rows.append(f"| [`{name}`][{target}] | [`{home}`][{home}] |")
    return "\n".join(rows) + "\n"


def _type_name(param) -> str:
    descriptor = getattr(param, "type_descriptor", None)  # typer resolves click types lazily
    annotation = getattr(descriptor, "annotation", None)
    name = getattr(annotation, "__name__", None) or getattr(getattr(param, "type", None), "name", "value")
    bounds = [
        f">= {param.min}" if getattr(param, "min", None) is not None else "",
        f"<= {param.max}" if getattr(param, "max", None) is not None else "",
    ]
    return " ".join([str(name or "value").lower(), *filter(None, bounds)])


def _option_row(param) -> str:
    if param.param_type_name == "option":
        names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
        kind = "flag" if param.is_flag else _type_name(param)
        if param.required:
            default = "required"
        else:
            default = "" if param.default is None or param.default is False else f"`{param.default}`"
    else:  # a positional argument
        names, kind = f"`{(param.metavar or param.name).upper()}` (argument)", _type_name(param)
        default = "required" if param.required else ("" if param.default is None else f"`{param.default}`")
    help_text = (getattr(param, "help", None) or "").replace("|", "\\|").replace("\n", " ")
    help_text = help_text.replace("<", "&lt;").replace(">", "&gt;")
    return f"| {names} | {kind} | {default} | {help_text} |"


def cli_page() -> str:
    """Markdown for every command of the ``predcode`` typer app: its docstring and options table."""
    import typer.main

    from predcode.cli import app

    root = typer.main.get_command(app)
    lines = [
        "# Command line",
        "",
        "The `predcode` command (`python -m predcode` is the same). This page is generated from the",
        "command's own definitions at docs build time; `predcode <command> --help` prints the same.",
        "",
        "```",
        "predcode [--version] COMMAND [OPTIONS]",
        "```",
        "",
    ]
    lines += _command_sections(root, "predcode", 2)
    return "\n".join(lines)


def _command_sections(group, prefix: str, level: int) -> list[str]:
    """A heading, the help and the options table of each command of ``group``; a sub-group's commands below it."""
    lines: list[str] = []
    commands = getattr(group, "commands", {})  # typer builds on (a vendored) click: a Group
    for name, cmd in commands.items():
        if cmd.hidden:
            continue
        lines += [f"{'#' * level} {prefix} {name}", "", (cmd.help or "").strip(), ""]
        if getattr(cmd, "commands", None):  # a sub-app such as `predcode credit`
            lines += _command_sections(cmd, f"{prefix} {name}", level + 1)
            continue
        lines += ["| option | type | default | meaning |", "|---|---|---|---|"]
        lines += [_option_row(p) for p in cmd.params if p.name != "help"]
        lines.append("")
    return lines


def example_page(path: Path) -> str:
    """The example's module docstring as Markdown, then its code (without the docstring)."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    doc = ast.get_docstring(tree) or f"# {path.stem}"
    body_start = tree.body[1].lineno - 1 if ast.get_docstring(tree) and len(tree.body) > 1 else 0
    code = "\n".join(source.splitlines()[body_start:]).strip("\n")
    return (
        f"{doc}\n\n## The script\n\n`examples/{path.name}`, run by the test suite on its reduced "
        f"setting:\n\n```python\n{code}\n```\n"
    )


def _nav_files(nav) -> set[str]:
    found: set[str] = set()
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            found |= _nav_files(value)
        elif isinstance(value, str):
            found.add(value)
    return found


def _page_title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem.replace("-", " ").capitalize()


def on_config(config, **kwargs):
    """Fill the nav placeholders "API reference" and "Examples" with the generated pages, and list
    any page of docs/ that the nav of mkdocs.yml does not name under "More" (so a new page is never
    left out of the site)."""
    nav = config["nav"]
    listed = _nav_files(nav)
    docs = Path(config["docs_dir"])
    extra = [
        {_page_title(p): p.relative_to(docs).as_posix()}
        for p in sorted(docs.rglob("*.md"))
        if p.relative_to(docs).as_posix() not in listed
    ]
    if extra:
        nav.append({"More": extra})
    for i, entry in enumerate(nav):
        if not isinstance(entry, dict):
            continue
        ((title, _),) = entry.items()
        if title == "API reference":
            nav[i] = {title: [{m: f"api/{m}.md"} for m in public_modules()]}
        elif title == "Examples":
            nav[i] = {title: [{_example_title(p): f"examples/{p.stem}.md"} for p in example_scripts()]}
    return config


def _example_title(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or path.stem
    return doc.splitlines()[0].lstrip("# ").split(":")[0].strip()


def on_files(files, config, **kwargs):
    """Add the generated pages to the build."""
    generated = {"cli.md": cli_page(), "changelog.md": (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")}
    generated.update({f"api/{m}.md": _api_page(m) for m in public_modules()})
    generated.update({f"examples/{p.stem}.md": example_page(p) for p in example_scripts()})
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    return files
