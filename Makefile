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

# The main job on the embedded defaults: corpus from this Python's standard library -> tokenizer -> a tiny GPT-2
# trained for a few minutes (3 checkpoints on branch tiny-demo of the local hub .demo/hub) -> perplexity and
# HumanEval pass@1/pass@10 (n=10) for every checkpoint -> gate into main -> results/leaderboard.{csv,md,png}.
# Safe to re-run: finished stages are kept and every evaluation is cached.
DEMO := .demo
BIN := $(VENV)/bin
demo: setup
	$(BIN)/harness sandbox check
	test -f $(DEMO)/corpus/stats.json || $(BIN)/pretrain corpus --max-files 2500 --out $(DEMO)/corpus \
		--source "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"
	test -f $(DEMO)/tokenizer/tokenizer.json || $(BIN)/pretrain tokenizer --corpus $(DEMO)/corpus --vocab-size 8192 \
		--out $(DEMO)/tokenizer
	test -f $(DEMO)/trained || { rm -rf $(DEMO)/hub $(DEMO)/runs && $(BIN)/pretrain train --model tiny \
		--tokenizer $(DEMO)/tokenizer --corpus $(DEMO)/corpus --repo $(DEMO)/hub --run tiny-demo \
		--max-steps 240 --save-every 80 --batch-size 8 --seq-length 512 --lr 1e-3 --warmup-steps 20 \
		--output-dir $(DEMO)/runs/tiny-demo && touch $(DEMO)/trained; }
	$(BIN)/harness eval --repo $(DEMO)/hub --ckpt tiny-demo --every-commit --n 10 --k 1,10 --output-dir $(DEMO)/eval
	$(BIN)/harness gate --repo $(DEMO)/hub --ckpt tiny-demo --n 10 --k 1,10 --output-dir $(DEMO)/eval
	$(BIN)/harness leaderboard
	@echo
	@echo "Honest numbers: a 5M-parameter model trained for minutes on a 2-core CPU scores about 0 on HumanEval;"
	@echo "what the demo shows is the pipeline: perplexity falls across checkpoints, every verdict comes from the"
	@echo "Docker sandbox, and the gate merged the run into main. See results/leaderboard.{csv,md,png}."

test: setup
	$(PY) -m pytest -q -rs --durations=15

bench: setup
	$(PY) bench/sandbox_throughput.py
	$(PY) bench/serve_load.py
	$(PY) bench/eval_samples.py
	$(PY) bench/generation_throughput.py
	$(PY) bench/train_throughput.py

clean:
	rm -rf $(VENV) .cache build *.egg-info $(DEMO)
