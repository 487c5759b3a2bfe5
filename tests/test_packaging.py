"""Packaging: one version, shipped configs found by name, and a wheel that works in a fresh environment."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
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


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _lower_bound(req: Requirement) -> str:
    (low,) = [s.version for s in req.specifier if s.operator == ">="]
    return low


def test_dependencies_are_ranges_and_the_constraints_pin_every_one_inside_its_range():
    project = _project()
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[req.name.lower().replace("_", "-")] = spec.version
    extras = project["optional-dependencies"]
    for text in (
        project["dependencies"]
        + extras["test"]
        + extras["dev"]
        + extras["docs"]
        + extras["export"]
        + extras["adaptive"]
    ):
        req = Requirement(text)
        if req.name == "predcode":
            continue
        ops = sorted(s.operator for s in req.specifier)
        assert ops == ["<", ">="], f"{text}: expected a range '>=low,<high', got {ops}"
        pinned = pins.get(req.name.lower())
        assert pinned is not None and pinned in req.specifier, f"constraints.txt: {req.name}=={pinned} for {text}"
    for name in ("jax", "jaxlib", "numpy", "threadpoolctl"):
        assert name in pins, name  # the transitive packages are pinned too (jaxlib comes with jax)
    (jax,) = [Requirement(t) for t in project["dependencies"] if t.startswith("jax")]
    (cuda,) = [Requirement(t) for t in extras["cuda12"]]
    assert cuda.name == "jax" and cuda.extras == {"cuda12"} and cuda.specifier == jax.specifier
    assert {"cuda12", "nengo", "track", "docs", "test", "dev", "export", "adaptive"} <= set(extras)
    assert (
        "predcode[adaptive,docs,export,track]" in extras["test"]
    )  # the adaptive solver's, export's, trackers' tests run in CI


def _build(outdir: Path) -> None:
    pytest.importorskip("build", reason="the `build` package (test extra) is not installed")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(outdir), str(ROOT)], capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0 and any(s in proc.stdout + proc.stderr for s in NETWORK_TROUBLE):
        pytest.skip("python -m build could not fetch its build requirements (no package index reachable)")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The wheel and sdist of the checkout, built once for this module's tests."""
    out = tmp_path_factory.mktemp("dist")
    _build(out)
    return out


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_fits(tmp_path, dist):
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
    # --ignore-installed: the test environment's own (editable) predcode is visible through the path
    # entry, and pip would otherwise call the wheel "already satisfied" and install nothing
    quiet_pip = ["--disable-pip-version-check", "--no-index", "--no-deps", "--ignore-installed"]
    pip = subprocess.run(
        [python, "-m", "pip", "install", *quiet_pip, str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    # the wheel's requirement ranges are met by what the environment holds
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


# pip's messages when no package index can be reached (a missing version is a failure, not a skip)
NO_INDEX = NETWORK_TROUBLE[2:]


def _install_and_fit(tmp_path: Path, dist: Path, python: str, pins: list[str], what: str) -> dict[str, str]:
    """A fresh venv of ``python`` with the wheel and ``pins`` from the package index; ``predcode
    --version`` and a tiny GNCN-PDH fit (Cholesky included) there. Returns the installed versions
    of the runtime dependencies."""
    (wheel,) = dist.glob(f"predcode-{predcode.__version__}-py3-none-any.whl")
    env = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(env)], check=True, capture_output=True, timeout=300)
    # not the test environment's PYTHONPATH: pip would take a checkout's predcode for the installed one
    run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    venv_python = str(env / "bin" / "python")
    pip = subprocess.run(
        [venv_python, "-m", "pip", "install", "--disable-pip-version-check", "--only-binary=:all:", str(wheel), *pins],
        capture_output=True,
        text=True,
        env=run_env,
        timeout=900,
    )
    if pip.returncode != 0 and any(s in pip.stdout + pip.stderr for s in NO_INDEX):
        pytest.skip(f"no package index reachable for {what}")
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    names = [Requirement(t).name for t in _project()["dependencies"]]
    probe = "import importlib.metadata as m, json, sys; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    shown = subprocess.run([venv_python, "-c", probe, *names], capture_output=True, text=True, env=run_env, check=True)
    installed = json.loads(shown.stdout)

    work = tmp_path / "work"
    work.mkdir()
    predcode_bin = str(env / "bin" / "predcode")
    version = subprocess.run([predcode_bin, "--version"], cwd=work, capture_output=True, text=True, env=run_env)
    assert version.stdout.strip() == f"predcode {predcode.__version__}", version.stderr
    if not os.environ.get("PREDCODE_DATA"):
        pytest.skip("no MNIST copy (PREDCODE_DATA) for the tiny fit")
    sets = {
        "data.n_train": "100",
        "data.n_val": "50",
        "train.epochs": "1",
        "train.batch_size": "50",
        "train.eval_batch_size": "50",
        "model.z_dims": "[12,12,8]",
        "model.n_top_group": "8",
        "model.K": "5",
    }
    fit = subprocess.run(
        [predcode_bin, "fit", "--config", "mnist/gncn_pdh", "--quiet"]
        + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
        cwd=work,
        capture_output=True,
        text=True,
        env=run_env,
        timeout=300,
    )
    assert fit.returncode == 0, fit.stdout + fit.stderr
    summary = json.loads((work / "runs" / "mnist" / "gncn_pdh" / "summary.json").read_text())
    assert summary["n_train"] == 100 and summary["trials"][0]["epochs_run"] == 1
    assert summary["trials"][0]["best_val_bce"] < 600  # a finite, image-sized BCE (the untrained model gives ~543)
    return installed


@pytest.mark.slow
def test_the_wheel_fits_with_the_lowest_allowed_versions(tmp_path, dist):
    """The lower bound of every runtime dependency (JAX 0.10.0, NumPy 2.0, ...), on this Python.
    Downloads about 150 MB the first time (pip's cache serves later runs)."""
    lows = {req.name: _lower_bound(req) for req in map(Requirement, _project()["dependencies"])}
    assert {"jax", "numpy", "scipy", "threadpoolctl"} <= set(lows)
    pins = [f"{name}=={low}" for name, low in lows.items()]
    installed = _install_and_fit(tmp_path, dist, sys.executable, pins, "the lowest allowed versions")
    assert {n: Version(v) for n, v in installed.items()} == {n: Version(v) for n, v in lows.items()}


def _newer_python() -> str | None:
    """A working Python >= 3.12 (JAX 0.11 and later need it): $PREDCODE_TEST_NEWER_PYTHON, else
    python3.13 / python3.12 on PATH, else a pyenv install."""
    candidates = [os.environ.get("PREDCODE_TEST_NEWER_PYTHON"), shutil.which("python3.13"), shutil.which("python3.12")]
    candidates += sorted(map(str, Path.home().glob(".pyenv/versions/3.1[2-9]*/bin/python3")), reverse=True)
    for exe in filter(None, candidates):
        probe = subprocess.run(
            [exe, "-c", "import sys; print(sys.version_info >= (3, 12))"], capture_output=True, text=True, timeout=60
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return exe
    return None


@pytest.mark.slow
def test_the_wheel_fits_with_the_newest_allowed_versions_on_a_newer_python(tmp_path, dist):
    """The newest release in every range (pip's choice: JAX 0.12 on 2026-12-02), on Python >= 3.12."""
    python = _newer_python()
    if python is None:
        pytest.skip("no Python >= 3.12 here (set PREDCODE_TEST_NEWER_PYTHON) for the newest JAX")
    installed = _install_and_fit(tmp_path, dist, python, [], "the newest allowed versions")
    (jax,) = [Requirement(t) for t in _project()["dependencies"] if Requirement(t).name == "jax"]
    assert installed["jax"] in jax.specifier and Version(installed["jax"]) >= Version("0.11")
