"""jaxlib's CPU LAPACK (SciPy's OpenBLAS) runs on one thread inside predcode's fit, demo and analyze,
and only there: importing predcode changes nothing, the previous count comes back afterwards, and a
count the user chose wins (probed in fresh interpreters: the setting is per process)."""

import json
import os
import subprocess
import sys

import pytest

from predcode.threads import _scipy_blas, lapack_threads

# Starts SciPy's OpenBLAS at 3 threads (a count neither predcode's 1 nor this machine's default),
# imports predcode's modules, then reads the count inside and after a lapack_threads() block.
PROBE = """
import json
from predcode.threads import _scipy_blas, lapack_threads
libs = _scipy_blas()
if not libs:
    print("null")
    raise SystemExit
libs[0].set_num_threads(3)
import predcode, predcode.learning.covariance, predcode.experiments.fit, predcode.experiments.analyze
after_import = libs[0].num_threads
with lapack_threads() as n:
    inside = libs[0].num_threads
print(json.dumps({"after_import": after_import, "yielded": n, "inside": inside, "after": libs[0].num_threads}))
"""


def _probe(**env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "PREDCODE_LAPACK_THREADS")
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out)
    if result is None:
        pytest.skip("SciPy's OpenBLAS is not a separate library here")
    return result


def test_import_leaves_openblas_alone_and_the_block_sets_one_thread_then_restores():
    assert _probe() == {"after_import": 3, "yielded": 1, "inside": 1, "after": 3}


def test_user_choices_win():
    assert _probe(PREDCODE_LAPACK_THREADS="2") == {"after_import": 3, "yielded": 2, "inside": 2, "after": 3}
    assert _probe(PREDCODE_LAPACK_THREADS="0") == {"after_import": 3, "yielded": None, "inside": 3, "after": 3}
    assert _probe(OPENBLAS_NUM_THREADS="2") == {"after_import": 3, "yielded": None, "inside": 3, "after": 3}


def test_blocks_nest_and_restore_on_errors():
    libs = _scipy_blas()
    if not libs:
        pytest.skip("SciPy's OpenBLAS is not a separate library here")
    before = libs[0].num_threads
    with pytest.raises(KeyError), lapack_threads(2):
        assert libs[0].num_threads == 2
        with lapack_threads(1):
            assert libs[0].num_threads == 1
        assert libs[0].num_threads == 2
        raise KeyError("inside the block")
    assert libs[0].num_threads == before


def test_fit_trains_on_one_lapack_thread(tmp_path, monkeypatch):
    """The protection of results/train_step.md: the training loop of `predcode fit` sees one thread."""
    if not os.environ.get("PREDCODE_DATA"):
        pytest.skip("no MNIST copy (PREDCODE_DATA) for the tiny fit")
    libs = _scipy_blas()
    if not libs:
        pytest.skip("SciPy's OpenBLAS is not a separate library here")
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "PREDCODE_LAPACK_THREADS"):
        monkeypatch.delenv(name, raising=False)
    from predcode.experiments.config import load_config, with_overrides
    from predcode.experiments.fit import fit

    cfg = with_overrides(
        load_config("mnist/gncn_t1_sigma"),
        **{
            "data.n_train": 60,
            "data.n_val": 30,
            "train.epochs": 1,
            "train.batch_size": 30,
            "train.eval_batch_size": 30,
            "model.z_dims": [8, 8, 8],
            "model.K": 3,
        },
    )
    libs[0].set_num_threads(2)
    seen: list[int] = []
    fit(cfg, tmp_path / "run", on_batch=lambda *args: seen.append(libs[0].num_threads))
    assert seen == [1, 1] and libs[0].num_threads == 2


def test_bad_values_name_the_setting(monkeypatch):
    monkeypatch.setenv("PREDCODE_LAPACK_THREADS", "many")
    with (
        pytest.raises(ValueError, match="PREDCODE_LAPACK_THREADS: expected an integer >= 0, got 'many'"),
        lapack_threads(),
    ):
        pass
    monkeypatch.setenv("PREDCODE_LAPACK_THREADS", "-2")
    with (
        pytest.raises(ValueError, match="PREDCODE_LAPACK_THREADS: expected an integer >= 0, got '-2'"),
        lapack_threads(),
    ):
        pass
    with pytest.raises(ValueError, match="n: expected an integer >= 0 .* got -1"), lapack_threads(-1):
        pass
    with pytest.raises(ValueError, match="n: expected an integer >= 0 .* got True"), lapack_threads(True):
        pass
