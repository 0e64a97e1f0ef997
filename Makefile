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

.PHONY: demo test test-fast test-slow bench bench-quick bench-cifar setup clean

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

# `cnnlab bench` for three sizes of network (inference and training rows, a plain PyTorch loop
# timed next to each training row), then the time-to-accuracy and augmentation benchmarks.
# Small batch and step counts: a few minutes on 2 CPU cores. ResNet-50 skips torch.compile
# (minutes of compilation on 2 cores).
RESNET50_TRAIN := --setting 'train plain' --setting 'train eager fp32' --setting 'train channels-last' \
	--setting 'train bf16' --setting 'train auto'
# bench: everything; bench-cifar alone took 81 minutes on 2 CPU cores (nearly all of it ResNet-20's
# recipe to its final accuracy); bench-quick: all but the CIFAR time to accuracy.
bench: bench-quick bench-cifar

bench-cifar: setup
	$(PY) benchmarks/bench_cifar.py

bench-quick: setup
	$(VENV)/bin/cnnlab bench lenet5 --batch 128 --steps 8 --min-time 1
	$(VENV)/bin/cnnlab bench resnet20 --batch 128 --steps 2 --min-time 1
	$(VENV)/bin/cnnlab bench resnet50 --batch 8 --steps 1 --min-time 0 --images 8 --mode inference
	$(VENV)/bin/cnnlab bench resnet50 --batch 8 --steps 1 --min-time 0 --mode training $(RESNET50_TRAIN)
	$(PY) benchmarks/bench_threads.py
	$(PY) benchmarks/bench_mnist.py
	$(PY) benchmarks/bench_augment.py

clean:
	rm -rf $(VENV) build src/*.egg-info
