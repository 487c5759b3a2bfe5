# The README's two commands: `make demo` and `make test`. Both work on a fresh clone.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
# Offline machines of this project keep verified dataset copies beside the checkout.
PREDCODE_DATA ?= $(firstword $(wildcard $(CURDIR)/../shared/data))
export PREDCODE_DATA
DEMO_OUT ?= runs/demo

.PHONY: demo test install docs lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/predcode demo --out $(DEMO_OUT)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# The docs site into site/; any warning (a broken link, a missing docstring target) fails the build.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples
	$(VENV)/bin/ruff format --check src tests examples
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) runs build dist site src/*.egg-info
