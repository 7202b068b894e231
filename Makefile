# deepq's front door. Every target bootstraps .venv itself, so a fresh clone needs only `make run` or `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# 2 cores here: more threads than cores stalls torch badly when anything else runs.
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export WANDB_MODE ?= offline
export HYDRA_FULL_ERROR ?= 1

.PHONY: venv run test test-all check bench reliability serve docs clean sample proto

venv: $(STAMP)

# torch first, from the local CPU wheel; everything else then resolves with torch held by constraints.txt
# (any other order lets pip fetch a multi-GB CUDA build).
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,peers,cluster]'
	@touch $(STAMP)

run: venv
	$(BIN)/deepq train $(ARGS)

# two workers for the two cores: the suite is mostly single-threaded CPU work
test: venv
	$(BIN)/python -m pytest -n 2 $(ARGS)

test-all: venv
	$(BIN)/python -m pytest -m "" $(ARGS)

check: venv
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: venv
	for s in $(filter-out scripts/bench_reliability.py,$(wildcard scripts/bench_*.py)); do echo "== $$s"; $(BIN)/python $$s || exit 1; done

# one table of fault figures (docs/reliability.md); ARGS="--small" for the seconds-long version, "--only cache"
reliability: venv
	$(BIN)/python scripts/bench_reliability.py $(ARGS)

serve: venv
	$(BIN)/deepq serve $(ARGS)

sample: venv
	$(BIN)/python scripts/make_sample.py

# regenerate the committed gRPC stubs (src/deepq/serve/pb/) from proto/deepq.proto
proto: venv
	$(BIN)/python scripts/gen_proto.py

clean:
	rm -rf outputs multirun .pytest_cache .mypy_cache .ruff_cache
