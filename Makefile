# Developer entry points. The real stack (Kafka + Jaeger) runs as plain local
# processes; see scripts/stack.sh for what it starts and where it logs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ket-installed
STACK  := scripts/stack.sh
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv stack-up stack-down stack-status test lint demo bench clean

help:
	@echo "make venv          create $(VENV) and install the project (again only when pyproject.toml changes)"
	@echo "make stack-up      start Kafka (127.0.0.1:19092) and Jaeger (OTLP 4317/4318, UI 16686)"
	@echo "make stack-down    stop them"
	@echo "make stack-status  show what runs"
	@echo "make test          venv + stack-up + pytest + stack-down (PYTEST_ARGS='...' is passed on)"
	@echo "make lint          ruff check"
	@echo "make demo          python -m tracing.demo"
	@echo "make bench         python -m benchmarks"
	@echo "make clean         stop the stack, remove .stack/ and Python caches (keeps $(VENV))"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev,b3,jaeger]'
	@touch $@

stack-up: venv
	$(STACK) up

stack-down:
	$(STACK) down

stack-status:
	$(STACK) status

# `stack.sh run` starts whatever is not running yet, runs pytest, and afterwards
# stops only what it started (also when pytest fails or is interrupted); the
# exit code is pytest's (5 = no tests collected, which counts as a failure).
test: venv
	$(STACK) run -- $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

demo: venv
	$(PY) -m tracing.demo

bench: venv
	$(PY) -m benchmarks

clean:
	-$(STACK) down
	rm -rf .stack .pytest_cache .ruff_cache .hypothesis build dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
