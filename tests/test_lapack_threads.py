"""predcode runs jaxlib's CPU LAPACK (SciPy's OpenBLAS) on one thread unless the user chose a count
(probed in fresh interpreters: the setting is per process)."""

import os
import subprocess
import sys

import pytest

from predcode._lapack_threads import limit_lapack_threads

PROBE = (
    "import predcode.learning.covariance\n"
    "from threadpoolctl import threadpool_info\n"
    "print(sorted((os.path.basename(os.path.dirname(i['filepath'])), i['num_threads'])"
    " for i in threadpool_info() if i['user_api'] == 'blas'))\n"
)


def _probe(**env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "PREDCODE_LAPACK_THREADS")
    }
    out = subprocess.run(
        [sys.executable, "-c", "import os\n" + PROBE], env={**clean, **env}, capture_output=True, text=True, check=True
    ).stdout
    return dict(eval(out))


def test_scipy_openblas_gets_one_thread_and_numpy_keeps_its_own():
    threads = _probe()
    if "scipy.libs" not in threads:
        pytest.skip("SciPy's OpenBLAS is not a separate library here")
    assert threads["scipy.libs"] == 1


def test_user_choices_win():
    assert _probe(PREDCODE_LAPACK_THREADS="2").get("scipy.libs", 2) == 2
    assert _probe(OPENBLAS_NUM_THREADS="2").get("scipy.libs", 2) == 2


def test_bad_values_name_the_setting(monkeypatch):
    monkeypatch.setenv("PREDCODE_LAPACK_THREADS", "many")
    with pytest.raises(ValueError, match="PREDCODE_LAPACK_THREADS"):
        limit_lapack_threads()
    with pytest.raises(ValueError, match="n: expected"):
        limit_lapack_threads(-1)
