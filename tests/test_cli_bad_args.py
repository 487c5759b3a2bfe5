"""Every subcommand of the command line, given bad arguments: one message, exit 2 or 1, no traceback.

The commands and their options are read from the typer app itself, so a command or option added
later is covered without editing this file: an unknown option, each required option left out,
each integer option given a non-number, a fraction and values far outside any range, each number
option given a non-number, NaN and infinity, each input path that does not exist, and bad
``--set`` overrides. Most cases run in-process (typer's CliRunner); two run the installed entry
point in a real subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from predcode.cli import app

runner = CliRunner()
MISSING = "/nonexistent-predcode-test/missing"


def _leaves(command, path: tuple[str, ...] = ()):
    if hasattr(command, "commands"):  # a group (typer's own click: duck-typed)
        for name, sub in sorted(command.commands.items()):
            yield from _leaves(sub, (*path, name))
    else:
        yield path, command


COMMANDS = dict(_leaves(get_command(app)))
# Options that name an input which must exist; an output (--out, --checkpoints) is created instead.
INPUTS = {"--config", "--run", "--folder", "--notes", "--extra"}


def _options(command) -> list:
    return [p for p in command.params if p.param_type_name == "option" and not p.is_flag and p.name != "help"]


def _annotation(option) -> object:
    return option.type_descriptor.annotation


def _required_args(command, skip: str | None = None) -> list[str]:
    """The command's required options, each given a path that does not exist (the command then fails
    on it, if nothing before it fails)."""
    args: list[str] = []
    for option in _options(command):
        if option.required and option.opts[0] != skip:
            args += [option.opts[0], MISSING]
    return args


def _cases():
    for path, command in COMMANDS.items():
        name = " ".join(path)
        yield f"{name}:unknown-option", [*path, "--no-such-option", "1"], 2, ["--no-such-option"]
        for option in _options(command):
            flag = option.opts[0]
            rest = _required_args(command, skip=flag)
            if option.required:
                yield f"{name}:{flag}-left-out", [*path, *rest], 2, [flag]
            if _annotation(option) is int:
                for value in ("abc", "1.5", "99999999999999999999", "-99999999999999999999"):
                    yield f"{name}:{flag}={value}", [*path, *rest, flag, value], 2, [flag]
            elif _annotation(option) is float:
                for value in ("abc", "nan", "inf", "-1e999"):
                    yield f"{name}:{flag}={value}", [*path, *rest, flag, value], 2, [flag]
            elif flag in INPUTS:
                # a config is named by its path ("config file not found: <path>"), the others by the option;
                # a results folder that does not exist holds no results: a failure (1), as an empty one
                named = [MISSING] if flag == "--config" else [flag, MISSING]
                if flag == "--folder":
                    yield f"{name}:{flag}-missing", [*path, *rest, flag, MISSING], 1, ["no per-rule results", MISSING]
                else:
                    yield f"{name}:{flag}-missing", [*path, *rest, flag, MISSING], 2, named
        if any(o.opts[0] == "--set" for o in _options(command)):
            config = {"fit": "mnist/gncn_pdh", "credit mnist": "credit/mnist_fa", "sweep": "mnist/gncn_pdh"}.get(name)
            for value, fragment in (
                ("nokey=1", "nokey"),
                ("model.K=abc", "model.K"),
                ("=3", "--set"),
                ("model.K", "--set"),
                ("train.epochs=0", "train.epochs"),
                ("train.epochs=99999999999999999999", "train.epochs"),
                ("model.zz_dims=[1]", "model.zz_dims"),
            ):
                if name == "credit mnist" and value.startswith("model.K"):
                    value = value.replace("model.K", "model.pc_steps")
                    fragment = "model.pc_steps"
                yield f"{name}:--set {value}", [*path, "--config", config, "--set", value], 2, [fragment]


CASES = list(_cases())


def test_every_command_of_the_app_is_covered():
    names = {" ".join(p) for p in COMMANDS}
    assert {"fit", "demo", "analyze", "sample", "credit mnist", "credit report", "credit online"} <= names
    covered = {cid.split(":")[0] for cid, *_ in CASES}
    assert covered == names
    assert len(CASES) >= 80, len(CASES)


def _one_message(output: str) -> int:
    return output.count("error: ") + output.count("─ Error ─")


@pytest.mark.parametrize("cid, args, code, fragments", CASES, ids=[c[0] for c in CASES])
def test_a_bad_argument_gets_one_message_and_its_exit_code(cid, args, code, fragments, tmp_path, monkeypatch):
    monkeypatch.setenv("PREDCODE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PREDCODE_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.chdir(tmp_path)  # a command that wrongly went on would write here, not in the checkout
    result = runner.invoke(app, args)
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output, output
    assert result.exit_code == code, output
    assert _one_message(output) == 1, output
    flat = " ".join(output.split())
    for fragment in fragments:
        assert fragment in flat, flat


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "--config", MISSING + ".toml", "--n-trials", "2"],
        ["sample", "--run", MISSING, "-n", "abc"],
    ],
)
def test_the_entry_point_in_a_subprocess_prints_one_message_without_traceback(args, tmp_path):
    env = {**os.environ, "PREDCODE_DATA": str(tmp_path / "data"), "PREDCODE_OFFLINE": "1", "COLUMNS": "300"}
    src = Path(__file__).resolve().parents[1] / "src"
    env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "predcode", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output and _one_message(output) == 1, output
