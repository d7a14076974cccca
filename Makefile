# Two entry points do all set-up on a fresh machine:
#   make study   runs the main job (studies/shortcut_ablation.yaml)
#   make test    runs the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STUDY ?= studies/shortcut_ablation.yaml
ARGS ?=

.PHONY: setup study test bench browser

# torch goes in first and alone: constraints.txt pins the CPU build that pip
# finds on this machine, so nothing later can pull a CUDA release.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

setup: $(VENV)/.installed

browser:
	bash scripts/install_chromium.sh

study: setup
	$(PY) -m search.run $(STUDY) $(ARGS)

# Everything by default (as CI: .ci/run runs this with an empty HOME);
# ARGS='-m "not slow"' leaves out the tests that start Ray.
# Two pytest-xdist workers, a module's tests on one, handed out in the order tests/conftest.py gives
# (--no-loadscope-reorder: xdist would otherwise hand out the modules with most tests first); conftest.py
# says how the real runs and the two-node Ray cluster are shared.
# The suite starts about a hundred Python processes (drivers, Ray workers, CLIs): each compiles the repository's
# modules and pytest rewrites the test modules in each worker, unless the bytecode is kept (in __pycache__, which
# git ignores), which a machine with PYTHONDONTWRITEBYTECODE set forbids: about 13 of the suite's 355 CPU-seconds.
# (Not PYTHONPYCACHEPREFIX: the installed packages' bytecode would then be compiled again, into it.)
test: setup browser
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder $(ARGS)
