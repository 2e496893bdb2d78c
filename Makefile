# hubspoke.revtunnel: the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# .cache/test-tools/bin: promtool, extracted by scripts/test-tools.sh (make test-tools).
export PATH := $(BIN):$(CURDIR)/.cache/test-tools/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/collections
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0

.PHONY: help venv test-tools lab demo demo-clean test test-readme unit lint sanity ansible-test-units \
	ansible-test-integration ansible-test docs docs-test docs-lint test-latest test-latest-ansible-test ee test-ee build release bench \
	bench-recovery bench-storm bench-converge clean

help:
	@echo "make demo        build a local Docker lab (hub, 2 spokes, operator), run site.yml, prove it"
	@echo "make demo-clean  remove the demo lab"
	@echo "make test        every check: unit tests, linters, collection build, molecule scenarios"
	@echo "make test-readme the README's front page, command by command, in a fresh clone against the demo lab"
	@echo "make unit        unit tests only (no Docker)"
	@echo "make docs        the HTML docs site (antsibull-docs, Sphinx): .cache/docs-site/build/html/index.html"
	@echo "make docs-test   build the docs site and check it in headless Chromium (part of make test)"
	@echo "make lint        ansible-lint, yamllint, ruff, ansible-test sanity, antsibull-docs, changelog lint, build"
	@echo "make sanity      ansible-test sanity on a collection-shaped copy of the checkout"
	@echo "make ansible-test  ansible-test sanity, units and integration (port_allocation on localhost)"
	@echo "make test-latest the newest ansible-core: ansible-test in a Debian 13 container, then molecule default"
	@echo "make test-latest-ansible-test  only its ansible-test sanity and units (what CI runs)"
	@echo "make ee          the execution environment image revtunnel-ee (ansible-builder, Docker; docs/usage.md)"
	@echo "make test-ee     site.yml through ansible-navigator in that image on a Docker lab of 1 hub + 3 spokes"
	@echo "make release     write CHANGELOG.md for galaxy.yml's version from changelogs/fragments (consumes them)"
	@echo "make bench       port allocation benchmark (bench-recovery, bench-storm: Docker lab benchmarks)"
	@echo "make bench-converge  site.yml seconds and tasks against a baseline commit (BENCH_ARGS='--spokes 3 --hub-only 100')"

venv:
	@bash scripts/bootstrap.sh

# shellcheck and promtool: the tests' own tools, which make demo does not install.
test-tools:
	@bash scripts/test-tools.sh

lab: venv
	@bash scripts/lab/ensure-docker.sh
	@bash scripts/lab/build-images.sh

# demo.sh runs its own phases (venv, Docker, images, lab), each on one line with its time.
demo:
	@bash scripts/lab/demo.sh up

demo-clean:
	@bash scripts/lab/demo.sh down

# tests/ee needs the EE image (make test-ee); the README test clones the checkout and runs make demo in the clone
# (make test-readme). CI runs all three (.ci/run). The docs site's test needs Debian's chromium.
test: lab test-tools
	bash scripts/docs/ensure-chromium.sh
	$(BIN)/pytest -p no:cacheprovider tests --ignore=tests/ee --ignore=tests/demo/test_readme.py

test-readme: lab
	$(BIN)/pytest -p no:cacheprovider tests/demo/test_readme.py

unit: venv test-tools
	$(BIN)/pytest -p no:cacheprovider tests/unit tests/test_docs.py

lint: venv test-tools
	$(BIN)/pytest -p no:cacheprovider tests/test_quality.py

sanity: venv test-tools
	bash scripts/ansible-test.sh sanity

ansible-test-units: venv test-tools
	bash scripts/ansible-test.sh units

ansible-test-integration: venv test-tools
	bash scripts/ansible-test.sh integration port_allocation

ansible-test: sanity ansible-test-units ansible-test-integration

docs: venv
	bash scripts/docs/build-site.sh

docs-test: venv
	bash scripts/docs/ensure-chromium.sh
	$(BIN)/pytest -p no:cacheprovider tests/docs

docs-lint: venv
	$(BIN)/antsibull-docs lint-collection-docs --plugin-docs .

test-latest: test-latest-ansible-test
	bash scripts/test-latest-molecule.sh

# The newest ansible-core's own judges (sanity, units, a syntax check) in a container: what CI runs.
test-latest-ansible-test: lab test-tools
	bash scripts/test-latest.sh

ee: venv
	bash scripts/ee/build-ee.sh

test-ee: lab ee
	$(BIN)/pytest -p no:cacheprovider tests/ee

release: venv
	$(BIN)/antsibull-changelog lint
	$(BIN)/antsibull-changelog release

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
