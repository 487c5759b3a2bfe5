# The README's two commands: `make demo` and `make test`. Both work on a fresh clone.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
# Offline machines of this project keep verified dataset copies beside the checkout.
PREDCODE_DATA ?= $(firstword $(wildcard $(CURDIR)/../shared/data))
export PREDCODE_DATA
DEMO_OUT ?= runs/demo
LINT_PATHS := src tests examples scripts setup.py benchmarks

.PHONY: demo test install docs lint bench clean

install: $(STAMP)

# pyproject.toml declares version ranges; constraints.txt pins every package to the versions the
# project is tested and its results computed with, so both commands install the same environment.
$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test,dev,nengo,track]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/predcode demo --out $(DEMO_OUT)

# Lint and type check first (`make lint`: ruff check, ruff format --check, mypy on src/); they take
# seconds and name the file and line.
# The suite runs on two pytest-xdist workers (most of a test's time is XLA compiling on one thread):
# 1175 tests in 677 s (11 min 41 s for `make test` with lint) from a fresh clone on a quiet 2-core machine.
test: lint
	$(VENV)/bin/python -m pytest -q -n 2

# The docs site into site/; any warning (a broken link, a missing docstring target) fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site  # the variable silences an end-of-life notice

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

# Benchmarks (minutes; the machine should be otherwise idle): the peer comparison with PCX and
# ngc-learn in their own pinned venvs (benchmarks/peers/setup.sh makes them), the GNCN-PDH train
# step against the matmul peak at batch 512 and 256, and the museum models' compile times.
bench: $(STAMP)
	bash benchmarks/peers/setup.sh
	$(VENV)/bin/python benchmarks/peers/run.py --json results/peers.json --md results/peers.md
	$(VENV)/bin/python benchmarks/train_step.py --max-wait 120 --json results/train_step.json > results/train_step.txt && cat results/train_step.txt
	$(VENV)/bin/python benchmarks/train_step.py --max-wait 120 --batch 256 --json results/train_step_b256.json > results/train_step_b256.txt && cat results/train_step_b256.txt
	$(VENV)/bin/python benchmarks/museum_compile.py --json results/museum_compile.json > results/museum_compile.txt && cat results/museum_compile.txt

clean:
	rm -rf $(VENV) runs build dist site src/*.egg-info
