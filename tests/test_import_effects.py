"""Importing predcode has no global effects (probed in fresh interpreters), and the command line's
start-up does not import JAX."""

import json
import subprocess
import sys

import pytest

import predcode

# Loads what predcode's modules would (matplotlib, the BLAS libraries, JAX), records the global
# settings, imports every public predcode module, and records them again.
PROBE = """
import importlib, json, pkgutil, sys
import matplotlib, numpy, scipy.linalg, sklearn.linear_model, jax
from threadpoolctl import threadpool_info

OPTIONAL = {"nengo", "mlflow", "wandb", "tensorboard", "safetensors", "nbclient", "nbformat"}

def state():
    return {
        "backend": repr(dict.__getitem__(matplotlib.rcParams, "backend")),  # not resolving "auto"
        "pyplot": "matplotlib.pyplot" in sys.modules,
        "blas": {i["filepath"]: i["num_threads"] for i in threadpool_info()},
        "jax": {k: repr(v) for k, v in jax.config.values.items()},
    }

before = state()
import predcode
names, skipped = [], []
for info in pkgutil.walk_packages(predcode.__path__, "predcode."):
    if info.name == "predcode.__main__" or any(p.startswith("_") for p in info.name.split(".")[1:]):
        continue
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as err:  # a module of an optional extra whose package is not installed
        if (err.name or "").split(".")[0] not in OPTIONAL:
            raise
        skipped.append(info.name)
        continue
    names.append(info.name)
for name in predcode.__all__:
    getattr(predcode, name)
after = state()
after["blas"] = {k: v for k, v in after["blas"].items() if k in before["blas"]}
trackers = sorted({"mlflow", "wandb"} & set(sys.modules))  # imported only when a fit asks for them
print(json.dumps({"before": before, "after": after, "modules": names, "skipped": skipped, "trackers": trackers}))
"""


def test_importing_every_public_module_changes_no_global_setting():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert {"predcode.cli", "predcode.experiments.fit", "predcode.experiments.plots"} <= set(result["modules"])
    assert "predcode.experiments.tracking" in result["modules"] and result["trackers"] == []
    before, after = result["before"], result["after"]
    assert after["backend"] == before["backend"] and not after["pyplot"]
    assert any("scipy" in path for path in before["blas"]), before["blas"]  # SciPy's OpenBLAS was loaded first
    assert after["blas"] == before["blas"]
    changed = {k: (v, after["jax"].get(k)) for k, v in before["jax"].items() if after["jax"].get(k) != v}
    assert changed == {}


def test_the_command_line_starts_without_jax():
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from predcode.cli import app\n"
        "for args in (['--version'], ['--help'], ['fit', '--help'], ['analyze', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "print(sorted(m for m in ('jax', 'numpy', 'matplotlib', 'scipy', 'sklearn') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[-2] == "[]"


def test_the_lazy_names_resolve_and_an_unknown_one_is_named():
    from predcode.models.gncn import GNCN

    assert predcode.GNCN is GNCN
    assert set(predcode.__all__) <= set(dir(predcode))
    for name in predcode.__all__:
        assert getattr(predcode, name) is not None
    with pytest.raises(AttributeError, match="module 'predcode' has no attribute 'GNCM'"):
        predcode.GNCM  # noqa: B018
