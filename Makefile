# Parley — two commands:
#   make run    build, then start `parley up`
#   make test   build, make sure PostgreSQL and NATS are up, run every test
#
# Node 24 comes from the `node` devDependency (node_modules/.bin/node), so the
# system node only has to be able to run npm.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build
# No "Entering/Leaving directory" lines: the last line of `make test` must be
# the test summary.
MAKEFLAGS += --no-print-directory

NODE := node_modules/.bin/node
NPM_FLAGS := --no-audit --no-fund

# make run ARGS="--flag"          extra arguments for `parley up`
# make test TESTS="unit relay"    test file filters / node --test options
# make bench BENCH=relay          run only dist/bench/relay/main.js
ARGS ?=
TESTS ?=
BENCH ?=
BENCH_ARGS ?=

.PHONY: help deps build run services test bench clean distclean

help:
	@echo "make deps       install node_modules (npm ci) when missing or out of date"
	@echo "make build      deps + npm run build (protobuf codegen + tsc into dist/)"
	@echo "make run        build, then $(NODE) dist/client/cli/main.js up \$$ARGS"
	@echo "make services   make sure PostgreSQL and NATS (JetStream) are listening"
	@echo "make test       build + services + every test (filters: TESTS=...)"
	@echo "make bench      build + services incl. RabbitMQ + dist/bench/*/main.js (BENCH=name)"
	@echo "make clean      remove dist/ and generated/ (distclean: node_modules/ too)"

# npm ci when node_modules is missing or older than package-lock.json
# (node_modules/.package-lock.json is written by every npm ci / npm install).
# A dangling or self-referencing node_modules symlink (e.g. one committed from a
# worktree) is removed first; the link itself only, never what it points to.
deps:
	@if [ -L node_modules ] && [ ! -d node_modules/ ]; then \
	  echo "removing broken node_modules symlink (-> $$(readlink node_modules))"; \
	  rm -f node_modules; \
	fi
	@if [ -f package-lock.json ]; then \
	  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	    echo "npm ci"; \
	    npm ci $(NPM_FLAGS); \
	  fi; \
	elif [ ! -f node_modules/.package-lock.json ] || [ package.json -nt node_modules/.package-lock.json ]; then \
	  echo "npm install (no package-lock.json)"; \
	  npm install $(NPM_FLAGS); \
	  touch node_modules/.package-lock.json; \
	fi
	@[ -x $(NODE) ] && $(NODE) --version >/dev/null 2>&1 || { \
	  echo "error: $(NODE) does not run. The 'node' devDependency installs it from its install script;" >&2; \
	  echo "       check that package.json allowScripts allows \"node\", then rm -rf node_modules and run make again." >&2; \
	  exit 1; }

build: deps
	@npm run build

# Node options of every server process: services/common/node-flags.ts.
run: build
	$(NODE) --max-semi-space-size=8 dist/client/cli/main.js up $(ARGS)

services:
	@bash scripts/ensure-services.sh

# The operator tests need a real etcd + kube-apiserver, built once from the Go
# module proxy (minutes cold, cached afterwards) before any test starts. The
# Helm chart tests need helm (also from the Go module proxy, cached) and
# promtool (Debian's prometheus package).
test: build services
	@PARLEY_CONTROLPLANE_DIR="$$(bash scripts/ensure-controlplane.sh)"; export PARLEY_CONTROLPLANE_DIR; \
	chart_tools="$$(bash scripts/ensure-chart-tools.sh)"; eval "$$chart_tools"; \
	export PARLEY_HELM PARLEY_PROMTOOL; \
	$(NODE) scripts/run-tests.mjs $(TESTS)

bench: build
	@bash scripts/ensure-services.sh --bench
	@entries=(); \
	for f in dist/bench/$(if $(BENCH),$(BENCH),*)/main.js; do [ -f "$$f" ] && entries+=("$$f"); done; \
	if [ $${#entries[@]} -eq 0 ]; then echo "no bench entry matches dist/bench/$(if $(BENCH),$(BENCH),*)/main.js" >&2; exit 1; fi; \
	status=0; \
	for entry in "$${entries[@]}"; do \
	  echo "=== $$entry"; \
	  $(NODE) "$$entry" $(BENCH_ARGS) || { echo "bench $$entry failed" >&2; status=1; }; \
	done; \
	exit $$status

clean:
	rm -rf dist generated

distclean: clean
	rm -rf node_modules
