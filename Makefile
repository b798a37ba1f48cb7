# Developer entry points. The real stack (Kafka + RabbitMQ + Jaeger, then the collector and
# Prometheus) runs as plain local processes; see scripts/stack.sh and
# scripts/metrics-stack.sh for what they start and where they log.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ket-installed
STACK  := scripts/stack.sh
METRICS := scripts/metrics-stack.sh
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv stack-up stack-down stack-status test lint typecheck demo demo-serve demo-live bench clean

help:
	@echo "make venv          create $(VENV) and install the project (again only when pyproject.toml changes)"
	@echo "make stack-up      start Kafka (127.0.0.1:19092), RabbitMQ (127.0.0.1:5672, Debian's rabbitmq-server)"
	@echo "                   and Jaeger (OTLP 4317/4318, UI 16686; UI assets"
	@echo "                   from KET_JAEGER_UI_ASSETS or downloaded, see scripts/stack.sh),"
	@echo "                   then the collector (OTLP 14317/14318) and Prometheus (19090)"
	@echo "make stack-down    stop them"
	@echo "make stack-status  show what runs, and whether 16686 serves the Jaeger UI or its placeholder page"
	@echo "make test          venv + stack-up + pytest + stack-down (PYTEST_ARGS='...' is passed on)"
	@echo "make lint          ruff check"
	@echo "make typecheck     mypy: --strict on the write side and the public modules, default on all of tracing/"
	@echo "make demo          the event-driven demo on an embedded Kafka, chains printed as trees"
	@echo "make demo-serve    the demo's services export over OTLP/HTTP to an eventchain serve --live it starts"
	@echo "make demo-live     the demo as six processes on the local stack (make stack-up first), trees read from Jaeger"
	@echo "make bench         python -m benchmarks"
	@echo "make clean         stop the stack, remove .stack/ and Python caches (keeps $(VENV))"

venv: $(STAMP)

# constraints.txt holds the versions the suite was last run with.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing the project and its pinned dependencies into $(VENV) (about 30 s the first time)"
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev,b3,jaeger]'
	@touch $@

stack-up: venv
	$(STACK) up
	$(METRICS) up

stack-down:
	-$(METRICS) down
	$(STACK) down

stack-status:
	@rc=0; $(STACK) status || rc=$$?; $(METRICS) status || rc=$$?; exit $$rc

# `stack.sh run` starts whatever is not running yet, runs pytest, and afterwards
# stops only what it started (also when pytest fails or is interrupted); the
# exit code is pytest's (5 = no tests collected, which counts as a failure).
# Prometheus and the collector are installed/built here, not inside a test, so a cold
# build shows its progress and no test finds a tool missing; so is the browser that
# tests/ui drives (Debian's chromium and chromium-driver), and so are the Java services and the
# OpenTelemetry Java agent that tests/e2e/test_java_chain.py runs (scripts/java-apps.sh, cached per version).
test: venv
	$(METRICS) install
	scripts/browser.sh install
	scripts/java-apps.sh install
	$(STACK) run -- $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

# tests/typing/ holds usage the type checker must accept or reject (each ignore must be needed).
typecheck: venv
	$(VENV)/bin/mypy --strict tracing/write tracing/__init__.py tracing/aio.py
	$(VENV)/bin/mypy --strict --warn-unused-ignores tests/typing
	$(VENV)/bin/mypy tracing

demo: venv
	$(PY) -m tracing.demo

demo-serve: venv
	$(PY) -m tracing.demo --serve

demo-live: venv
	$(PY) -m tracing.demo --live

bench: venv
	$(PY) -m benchmarks

clean:
	-$(METRICS) down
	-$(STACK) down
	rm -rf .stack .pytest_cache .ruff_cache .hypothesis build dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
