# The README's two commands: `make demo` and `make test`. Both work on a fresh clone.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
# Offline machines of this project keep verified dataset copies beside the checkout.
PREDCODE_DATA ?= $(firstword $(wildcard $(CURDIR)/../shared/data))
export PREDCODE_DATA
DEMO_OUT ?= runs/demo

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/predcode demo --out $(DEMO_OUT)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) runs build src/*.egg-info
