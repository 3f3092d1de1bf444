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

.PHONY: setup demo test test-slow test-all data benchmark clean

setup:
	@bash tools/setup_env.sh

data: setup
	$(PY) tools/make_demo_data.py

demo: setup
	$(PY) tools/run_demo.py

test: setup
	$(PYTEST) -m "not slow" tests

test-slow: setup
	$(PYTEST) -m slow tests

test-all: setup
	$(PYTEST) tests

# Re-measure the committed benchmark results (full sweep, ~1 h on 2 CPU cores).
benchmark: setup
	$(PY) tools/analysis/benchmark.py --update-docs

clean:
	rm -rf work_dirs demo_outputs
