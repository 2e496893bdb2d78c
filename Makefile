# hubspoke.revtunnel: the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/collections
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0

.PHONY: help venv lab demo demo-clean test unit lint build bench bench-recovery bench-storm bench-converge clean

help:
	@echo "make demo        build a local Docker lab (hub, 2 spokes, operator), run site.yml, prove it"
	@echo "make demo-clean  remove the demo lab"
	@echo "make test        every check: unit tests, linters, collection build, molecule scenarios"
	@echo "make unit        unit tests only (no Docker)"
	@echo "make lint        ansible-lint, yamllint, ruff"
	@echo "make bench       port allocation benchmark (bench-recovery, bench-storm: Docker lab benchmarks)"
	@echo "make bench-converge  site.yml seconds and tasks against a baseline commit (BENCH_ARGS='--spokes 3 --hub-only 100')"

venv:
	@bash scripts/bootstrap.sh

lab: venv
	@bash scripts/lab/ensure-docker.sh
	@bash scripts/lab/build-images.sh

demo: lab
	@bash scripts/lab/demo.sh up

demo-clean:
	@bash scripts/lab/demo.sh down

test: lab
	$(BIN)/pytest -p no:cacheprovider tests

unit: venv
	$(BIN)/pytest -p no:cacheprovider tests/unit tests/test_readme.py

lint: venv
	$(BIN)/pytest -p no:cacheprovider tests/test_quality.py

build: venv
	$(BIN)/ansible-galaxy collection build --force --output-path .cache/dist .

bench: venv
	$(BIN)/python bench/bench_port_allocation.py

bench-recovery: lab
	$(BIN)/python bench/recovery.py

bench-storm: lab
	$(BIN)/python bench/storm.py

bench-converge: lab
	$(BIN)/python bench/converge.py $(BENCH_ARGS)

clean: demo-clean
	rm -rf .cache $(VENV)
