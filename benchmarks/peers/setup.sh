#!/usr/bin/env bash
# Create the peers' virtual environments with pinned versions (idempotent: a venv is rebuilt only
# when its requirements file is newer than it).
#
#   .venv-pcx  Python 3.11, PCX 0.6.3 on jax/jaxlib 0.4.38 (PCX needs jax < 0.5)   requirements-pcx.txt
#   .venv-ngc  Python 3.12, ngc-learn 3.2.3 on jax/jaxlib 0.12.0.1                 requirements-ngc.txt
#              (ngc-learn 3.2.3 needs jax >= 0.11, published only for Python >= 3.12)
#
# predcode itself is installed into both, editable and without its dependencies, so that it can
# be timed under each peer's JAX release (optax 0.2.8, which predcode imports, is pinned in
# requirements-ngc.txt for that reason; ngc-learn does not use it).
# Interpreters: $PY311 / $PY312, else python3.11 / python3.12 on PATH, else pyenv's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

find_python() {  # find_python 3.11: the first candidate that really runs as Python 3.11
    local var="PY${1/./}" cand
    for cand in "${!var:-}" "$(command -v "python$1" 2>/dev/null || true)" \
                "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/python; do
        if [ -n "$cand" ] && [ -x "$cand" ] && "$cand" -c \
            "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$1'.split('.'))))" 2>/dev/null; then
            echo "$cand"; return
        fi
    done
    echo "setup.sh: no working Python $1 found (set $var=/path/to/python$1)" >&2
    exit 1
}

make_venv() {  # make_venv NAME PYTHON_VERSION REQUIREMENTS
    local dir="$here/.venv-$1" req="$here/$3"
    if [ -f "$dir/.stamp" ] && [ "$dir/.stamp" -nt "$req" ]; then
        echo "setup.sh: $dir is up to date"; return
    fi
    local py; py="$(find_python "$2")"
    echo "setup.sh: creating $dir with $py"
    rm -rf "$dir"
    "$py" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root"
    touch "$dir/.stamp"
}

make_venv pcx 3.11 requirements-pcx.txt
make_venv ngc 3.12 requirements-ngc.txt
