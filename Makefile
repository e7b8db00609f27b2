# Two commands for a newcomer: `make demo` and `make test`. Both set up what they need and are safe to re-run.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH := torch==2.13.0

.PHONY: setup venv docker image demo test bench clean

setup: venv docker image

# torch first, pinned: the CPU build on local disk. An unpinned torch would pull a multi-GB CUDA build.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[dev]'
	touch $@

docker:
	bash sandbox/ensure_docker.sh .cache

image: venv docker
	$(VENV)/bin/harness sandbox build

demo: setup
	$(VENV)/bin/harness sandbox check --repeat 5

test: setup
	$(PY) -m pytest -q -rs

bench: setup
	$(PY) bench/sandbox_throughput.py

clean:
	rm -rf $(VENV) .cache build *.egg-info
