"""Packaging: one version, shipped configs found by name, and a wheel that works in a fresh environment."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import predcode
from predcode.cli import app
from predcode.experiments.config import find_config, load_config, shipped_configs

ROOT = Path(__file__).resolve().parents[1]
NETWORK_TROUBLE = (
    "No matching distribution",
    "Could not find a version",
    "Failed to establish a new connection",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "ProxyError",
)


def test_the_version_has_one_source():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("predcode") == predcode.__version__
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"predcode {predcode.__version__}"


def test_every_config_of_the_checkout_is_shipped_and_loads_by_name(tmp_path, monkeypatch):
    files = sorted(p for p in (ROOT / "configs").rglob("*") if p.suffix in (".toml", ".cfg"))
    names = [p.relative_to(ROOT / "configs").with_suffix("").as_posix() for p in files]
    assert shipped_configs() == sorted(names)
    monkeypatch.chdir(tmp_path)  # a name works from any folder; the run goes to ./runs/<name>
    for name in names:
        path, shipped = find_config(name)
        assert shipped == name and path.is_file()
        if path.suffix == ".toml":
            cfg = load_config(name)
            assert cfg.out_dir == str(tmp_path / "runs" / name)
            assert cfg.source == str(path.resolve())
    assert find_config("mnist/paper/gncn_t1.toml")[1] == "mnist/paper/gncn_t1"
    assert find_config("configs/mnist/gncn_pdh")[1] == "mnist/gncn_pdh"
    assert find_config("../etc/passwd") == (Path("../etc/passwd"), None)


def test_an_unknown_config_name_lists_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["fit", "--config", "mnist/gncn_pdx"])
    assert result.exit_code == 2
    assert "config file not found" in result.output and "mnist/gncn_pdh" in result.output


def _build(outdir: Path) -> None:
    pytest.importorskip("build", reason="the `build` package (test extra) is not installed")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(outdir), str(ROOT)], capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0 and any(s in proc.stdout + proc.stderr for s in NETWORK_TROUBLE):
        pytest.skip("python -m build could not fetch its build requirements (no package index reachable)")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_fits(tmp_path):
    dist = tmp_path / "dist"
    _build(dist)
    (wheel,) = dist.glob(f"predcode-{predcode.__version__}-py3-none-any.whl")
    (sdist,) = dist.glob(f"predcode-{predcode.__version__}.tar.gz")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert "predcode/configs/mnist/gncn_pdh.toml" in names and "predcode/cli.py" in names
    assert not any(n.startswith("tests/") for n in names)
    with tarfile.open(sdist) as tf:
        members = {m.split("/", 1)[1] for m in tf.getnames() if "/" in m}
    assert {"configs/mnist/gncn_pdh.toml", "setup.py", "pyproject.toml", "CHANGELOG.md"} <= members

    # A fresh venv without this checkout. Its dependencies come from the test environment's
    # site-packages through a .pth path entry (no download; a path entry's own .pth files, such as
    # the editable predcode's finder, are not run), so the installed wheel is the only predcode.
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "predcode_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = subprocess.run(
        [python, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    # the wheel's pinned requirements are met by what the environment holds
    check = subprocess.run(
        [
            python,
            "-c",
            (
                "import importlib.metadata as m, json; from packaging.requirements import Requirement\n"
                "bad = [str(r) for r in map(Requirement, m.requires('predcode') or []) if not r.marker "
                "and m.version(r.name) not in r.specifier]\nprint(json.dumps(bad))"
            ),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0 and json.loads(check.stdout) == [], check.stdout + check.stderr

    work = tmp_path / "work"  # not the checkout: nothing may come from its configs/ or src/
    work.mkdir()
    run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run(
        [python, "-c", "import predcode; print(predcode.__file__, predcode.__version__)"],
        cwd=work,
        capture_output=True,
        text=True,
        env=run_env,
        timeout=120,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.split()[0].startswith(site) and where.stdout.split()[1] == predcode.__version__

    predcode_bin = str(env / "bin" / "predcode")
    helped = subprocess.run([predcode_bin, "--help"], cwd=work, capture_output=True, text=True, env=run_env)
    assert helped.returncode == 0 and "fit" in helped.stdout and "analyze" in helped.stdout, helped.stderr
    version = subprocess.run([predcode_bin, "--version"], cwd=work, capture_output=True, text=True, env=run_env)
    assert version.stdout.strip() == f"predcode {predcode.__version__}"
    if not os.environ.get("PREDCODE_DATA"):
        pytest.skip("no MNIST copy (PREDCODE_DATA) for the tiny fit")
    fit = subprocess.run(
        [
            predcode_bin,
            "fit",
            "--config",
            "mnist/gncn_t1",
            "--quiet",
            "--set",
            "data.n_train=100",
            "--set",
            "data.n_val=50",
            "--set",
            "train.epochs=1",
            "--set",
            "train.batch_size=50",
            "--set",
            "train.eval_batch_size=50",
            "--set",
            "model.z_dims=[8,8,8]",
            "--set",
            "model.K=5",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env=run_env,
        timeout=300,
    )
    assert fit.returncode == 0, fit.stdout + fit.stderr
    run = work / "runs" / "mnist" / "gncn_t1"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_train"] == 100 and summary["n_val"] == 50 and summary["trials"][0]["epochs_run"] == 1
    assert (run / "best0.npz").is_file() and (run / "metrics.csv").is_file()
