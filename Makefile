# The two commands in the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Offline machines keep the datasets beside the checkout; use them when nothing else is set.
ifeq ($(strip $(CNNLAB_DATA)),)
  ifneq ($(wildcard ../shared/datasets),)
    CNNLAB_DATA := $(abspath ../shared/datasets)
  endif
endif
export CNNLAB_DATA

.PHONY: demo test test-fast test-slow bench setup clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

demo: setup
	$(VENV)/bin/cnnlab train lenet5 --data mnist

# The whole suite, slow tests included (about 5 minutes on 2 idle cores): two worker
# processes, one per core. `pytest` alone runs the fast part only (about 1 minute).
test: setup
	@bash .ci/install-browser.sh || echo "warning: chromium missing; tests/serve/test_browser.py will fail"
	$(PY) -m pytest -q -n 2 --dist loadfile -m 'slow or not slow'

test-fast: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

test-slow: setup
	$(PY) -m pytest -q -n 2 --dist loadfile -m slow

bench: setup
	$(PY) benchmarks/bench_mnist.py
	$(PY) benchmarks/bench_augment.py

clean:
	rm -rf $(VENV) build src/*.egg-info
