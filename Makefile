PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck pytest demo bench bench-compare bench-real test-real mutate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools

typecheck: $(STAMP)
	$(BIN)/mypy src
	$(BIN)/mypy tests/typing

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/salvo demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks
	$(BIN)/python benchmarks/bench_provider_streams.py
	$(BIN)/python benchmarks/bench_local_batch.py --n 100000
	$(BIN)/python benchmarks/bench_proxy.py
	$(BIN)/python benchmarks/bench_hedge.py --chart docs/hedge.png
	$(BIN)/python benchmarks/bench_otel.py
	$(BIN)/python benchmarks/bench_limits_store.py

# The openai SDK, LiteLLM and matplotlib go in a venv of their own, never in the dev venv.
bench-compare:
	test -x benchmarks/.venv-compare/bin/python || $(PY) -m venv benchmarks/.venv-compare
	benchmarks/.venv-compare/bin/python -m pip install -q -e '.[bench]'
	benchmarks/.venv-compare/bin/python -m benchmarks --compare --chart docs/bench.png

bench-real: $(STAMP)
	$(BIN)/python -m benchmarks.real

test-real: $(STAMP)
	$(BIN)/python -m benchmarks.real --setup-only
	$(BIN)/pytest -q -o addopts='-p no:cacheprovider' tests/real

# Mutation testing (not part of make test: it takes a while). mutmut goes in the dev venv.
mutate: $(STAMP)
	$(BIN)/python -m pip install -q 'mutmut==3.8.*'
	$(BIN)/python tools/mutate.py --show-survivors

clean:
	rm -rf $(VENV) build dist
