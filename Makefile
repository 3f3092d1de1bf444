# The README's two commands are `make demo` and `make test`; both set the environment up first.
# Use an existing interpreter instead of ./.venv with: make test PYTHON=/path/to/python
SHELL := /bin/bash
ifdef PYTHON
PY := $(PYTHON)
else
PY := $(CURDIR)/.venv/bin/python
endif
export PYTHON
PYTEST := $(PY) -m pytest -p no:cacheprovider

.PHONY: setup demo test test-slow test-gpu test-all data benchmark clean lint format

setup:
	@bash tools/setup_env.sh

data: setup
	$(PY) tools/make_demo_data.py

demo: setup
	$(PY) tools/run_demo.py

LINT_PATHS := mmlinattn tools tests configs setup.py

# flake8 + isort + yapf as configured in setup.cfg (the same hooks as .pre-commit-config.yaml).
lint: setup
	$(PY) -m flake8 $(LINT_PATHS)
	$(PY) -m isort --check-only --quiet $(LINT_PATHS)
	@diff=$$($(PY) -m yapf --diff --recursive --parallel $(LINT_PATHS)); \
	if [ -n "$$diff" ]; then echo "$$diff"; echo 'yapf: run make format'; exit 1; fi

format: setup
	$(PY) -m isort --quiet $(LINT_PATHS)
	$(PY) -m yapf --in-place --recursive --parallel $(LINT_PATHS)

test: setup lint
	$(PYTEST) -m "not slow and not cuda" tests

test-slow: setup
	$(PYTEST) -m "slow and not cuda" tests

# The CUDA suite (tests/cuda, marker `cuda`; every test skips where torch sees no CUDA device).
# It does not run set-up on purpose: set-up installs the CPU build of torch, and a GPU machine needs
# a CUDA build in the interpreter given (PYTHON=...). A module that fails to import elsewhere in
# tests/ still fails the run but does not stop the CUDA tests. Extra options: PYTEST_ARGS='-rA ...'.
test-gpu:
	$(PYTEST) -m cuda --continue-on-collection-errors $(PYTEST_ARGS) tests

test-all: setup
	$(PYTEST) tests

# Re-measure the committed benchmark results (full sweep, ~1 h on 2 CPU cores).
benchmark: setup
	$(PY) tools/analysis/benchmark.py --update-docs

clean:
	rm -rf work_dirs demo_outputs
