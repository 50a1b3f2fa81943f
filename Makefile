# The notifier's commands. `make help` lists them; README.md explains the two that matter:
# `make run` (the demo on a local stack) and `make test` (everything CI checks).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STACK ?= dev
BROKERS ?= 1
NOTIFIER := NOTIFIER_STACK=$(STACK) $(BIN)/notifier
DEVSTACK := $(BIN)/python -m devstack
# `make chaos`'s own stack: brokers on 29092-29094, registry on 28081, clear of dev and test
CHAOS_PORT := 29092
TEST_ENV := NOTIFIER_STACK=test NOTIFIER_KAFKA_BOOTSTRAP=127.0.0.1:19092

.PHONY: help venv lock up down status topics migrate run bench chaos lint test test-stack-up test-stack-down clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  make %-16s %s\n", $$1, $$2}'

# every install goes through constraints.txt, the lock of every dependency (`make lock`)
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "no $(PYTHON) on PATH (Python 3.11+ needed)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --progress-bar off -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install the notifier with its dev tools, as locked

lock: venv ## Resolve pyproject.toml's dependencies again into constraints.txt (then commit it)
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu --no-header --quiet -o constraints.txt

up: venv ## Start Kafka, the schema registry, PostgreSQL (BROKERS=1|3); topics, schemas, migrations
	$(DEVSTACK) up --stack $(STACK) --brokers $(BROKERS)
	@set -a; source .stack/$(STACK)/stack.env; set +a; \
		$(BIN)/notifier topics create && $(BIN)/notifier schemas register && \
		$(BIN)/notifier db migrate

down: venv ## Stop everything the stack started (no process is left behind)
	$(DEVSTACK) down --stack $(STACK)

status: venv ## Show what runs in the stack, with pids and addresses
	$(DEVSTACK) status --stack $(STACK)

run: up ## Set everything up, run sandbox, bridge and worker, page two people, acknowledge from Slack
	@set -a; source .stack/$(STACK)/stack.env; set +a; $(BIN)/notifier demo

bench: up ## Measure throughput, latency and the raw Kafka ceiling against the sandbox
	@set -a; source .stack/$(STACK)/stack.env; set +a; $(BIN)/notifier bench $(BENCH_ARGS)

chaos: venv ## Failure drill on a 3-broker stack: SIGKILLs, broker and PostgreSQL down (CHAOS_ARGS=--short)
	@NOTIFIER_STACK_KAFKA_PORT=$(CHAOS_PORT) $(MAKE) --no-print-directory up STACK=chaos BROKERS=3
	@set -a; source .stack/chaos/stack.env; set +a; $(BIN)/notifier chaos $(CHAOS_ARGS)

lint: venv ## ruff (lint and format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test-stack-up: venv
	$(DEVSTACK) up --stack test

test-stack-down: venv
	$(DEVSTACK) down --stack test

test: venv lint ## Lint, then start an isolated test stack, run every test, stop the stack
	@$(MAKE) --no-print-directory test-stack-up
	@set -o pipefail; rc=0; $(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
		$(MAKE) --no-print-directory test-stack-down; \
		if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; fi; exit $$rc

clean: ## Stop the stacks and delete their data (keeps the jar cache and .venv)
	-$(DEVSTACK) down --stack dev
	-$(DEVSTACK) down --stack test
	rm -rf .stack
