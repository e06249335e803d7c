# Two commands for a fresh machine: `make demo` and `make test`. Both set everything up first:
# the virtual environment (.venv), the package and its dependencies, and the test VST3 plugins.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stito-installed

.PHONY: setup plugins demo test test-slow clean

setup: $(STAMP) plugins

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch pinned first so pip takes the CPU wheel on this machine, not a multi-GB CUDA build; --no-compile:
	# Python byte-compiles what is imported when it first is, rather than all of torch at install time
	$(PY) -m pip install -q --no-compile torch==2.13.0
	$(PY) -m pip install -q --no-compile -e '.[test,reaper,bench,train,batch]'
	touch $(STAMP)

plugins: .plugins/.installed

.plugins/.installed: scripts/install-test-plugins.sh
	bash scripts/install-test-plugins.sh .plugins

demo: setup
	$(VENV)/bin/stito demo --out-dir out/demo

test: setup
	$(PY) -m pytest -q -m "not slow"

test-slow: setup
	$(PY) -m pytest -q -m slow

clean:
	rm -rf out .pytest_cache
