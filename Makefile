# The README's two commands: `make demo` and `make test`. Both install what is missing first.
# Node.js 24 comes from the `node` devDependency: npm scripts put it first on the PATH, and npm
# itself runs on it (dev/npm.sh), whatever node the machine has.

SHELL := /bin/bash
NPM_STAMP := node_modules/.install-stamp
NPM := bash dev/npm.sh

.PHONY: all install system-deps consumer-deps traced-go-service test-deps go-tools build lint typecheck test test-consumers demo clean

all: build

# Debian's redis-server for the tests' own Redis servers (present on this kind of machine),
# Debian's Chromium for the browser test of the Temporal UI (driven by playwright-core), tinyproxy
# and openssl for the egress-proxy and mTLS tests (a real proxy; a test PKI made per run), and for
# the production-topology tests: redis-sentinel, PostgreSQL (dev/postgresql/ensure.sh), Docker's
# engine and debootstrap (the image test builds its base image from Debian).
system-deps:
	@command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { \
	  echo "Installing redis-server (Debian package)…"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server redis-tools; \
	  else echo "redis-server is missing: sudo apt-get install redis-server redis-tools" >&2; exit 1; fi; }
	@[ -x /usr/bin/chromium ] || { \
	  echo "Installing chromium (Debian package)…"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else echo "chromium is missing: sudo apt-get install chromium" >&2; exit 1; fi; }
	@command -v redis-sentinel >/dev/null || { \
	  echo "Installing redis-sentinel (Debian package)…"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-sentinel; \
	  else echo "redis-sentinel is missing: sudo apt-get install redis-sentinel" >&2; exit 1; fi; }
	@# The package must not start the engine it brings: that one would make its default bridge
	@# network (a private range). The image test starts its own with host networking only.
	@command -v dockerd >/dev/null && command -v debootstrap >/dev/null || { \
	  echo "Installing docker.io and debootstrap (Debian packages, for the image test)…"; \
	  if [ "$$(id -u)" = 0 ]; then \
	    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1; fi; \
	    apt-get update -qq && apt-get install -y -qq docker.io debootstrap; status=$$?; \
	    [ -z "$${made_policy:-}" ] || rm -f /usr/sbin/policy-rc.d; [ $$status = 0 ]; \
	  else echo "dockerd or debootstrap is missing (the image test will be skipped): sudo apt-get install docker.io debootstrap" >&2; fi; }
	@bash dev/postgresql/ensure.sh
	@command -v tinyproxy >/dev/null && command -v openssl >/dev/null || { \
	  echo "Installing tinyproxy and openssl (Debian packages, for the egress proxy and mTLS tests)…"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq tinyproxy openssl; \
	  else echo "tinyproxy or openssl is missing: sudo apt-get install tinyproxy openssl" >&2; exit 1; fi; }
	@command -v docker-compose >/dev/null || { \
	  echo "Installing docker-compose (Debian package, to validate docker-compose.yml)…"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq docker-compose; \
	  else echo "docker-compose is missing: sudo apt-get install docker-compose" >&2; exit 1; fi; }
	@# etcd for the suite's Kubernetes control plane (test/support/kube-apiserver.ts starts its own).
	@command -v etcd >/dev/null || { \
	  echo "Installing etcd-server (Debian package, the store of the tests' kube-apiserver)…"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq etcd-server; \
	  else echo "etcd is missing: sudo apt-get install etcd-server" >&2; exit 1; fi; }

# The Python consumer library is tested with Debian's packages, so with Debian's interpreter: a
# pyenv or virtualenv python3 first on the PATH would not see them.
PYTHON ?= /usr/bin/python3

# Go for the Go consumer library (its modules come from the Go module proxy on the first
# `go test`, pinned by consumers/go/go.sum), and Debian's redis-py, requests, httpx and pytest
# for the Python one. After system-deps: both may run apt-get, which holds one lock.
consumer-deps: system-deps
	@command -v go >/dev/null || { echo "Go is missing: install Go 1.26 or later (dev/temporal-cli/go.mod; it also builds the Temporal CLI)" >&2; exit 1; }
	@$(PYTHON) -c 'import redis, requests, httpx, pytest' 2>/dev/null || { \
	  echo "Installing python3-redis, python3-requests, python3-httpx and python3-pytest (Debian packages)…"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3 python3-redis python3-requests python3-httpx python3-pytest; \
	  else echo "Python packages are missing: sudo apt-get install python3-redis python3-requests python3-httpx python3-pytest" >&2; exit 1; fi; }

# npm ci installs from the lock alone: a change of package.json's scripts needs no reinstall (and a
# reinstall in the middle of a test run, which runs make demo, would pull node_modules from under it).
# It links the workspace consumers/node (the consumer library `token-lifecycle`, which the worker
# imports) and builds it (the root's `prepare` script), so lint and typecheck find its types.
$(NPM_STAMP): package-lock.json
	$(NPM) ci --no-audit --no-fund
	@touch $@

install: $(NPM_STAMP)

# Pinned Go programs, each built once from dev/<name>/go.mod by dev/<name>/ensure.sh and cached
# outside the checkout (~/.cache/token-lifecycle-worker), so fresh clones reuse them:
# - temporal-cli: the Temporal dev server and Web UI;
# - temporal-server: the Temporal server and temporal-sql-tool (PostgreSQL), for the topology tests;
# - hydra: ORY Hydra, a second real IAM (test/support/hydra.ts);
# - kube-apiserver: the suite's Kubernetes control plane (test/support/kube-apiserver.ts);
# - prometheus: Prometheus and promtool, for the alert rules (test/alerts/);
# - helm: Helm v4, for the chart (test/integration/helm-chart.test.ts);
# - jaeger: the tracing backend of the trace tests (test/support/jaeger.ts).
GO_TOOLS := temporal-cli temporal-server hydra kube-apiserver prometheus helm jaeger
.PHONY: $(GO_TOOLS)

$(GO_TOOLS):
	@bash dev/$@/ensure.sh >/dev/null

# The Go service of test/integration/traces-consumers.test.ts (OpenTelemetry Go SDK, OTLP), built
# here once so that the test's own `go build` finds everything in Go's build cache.
traced-go-service:
	cd consumers/go/internal/tracedservice && go build -o /dev/null .

# A build is redone only when a source changed: the suite's demo test runs make demo while other
# tests run the built worker, and a needless rebuild would rewrite dist/ under them.
BUILD_STAMP := dist/.build-stamp
BUILD_INPUTS := $(shell git ls-files workflows activities shared worker client cli dev consumers/node 2>/dev/null) package.json tsconfig.json tsconfig.build.json

$(BUILD_STAMP): $(NPM_STAMP) $(BUILD_INPUTS)
	$(NPM) run build

build: $(BUILD_STAMP)

lint: install
	$(NPM) run lint

typecheck: install
	$(NPM) run typecheck

# What the suite needs, made side by side: on a fresh machine the Go builds (CPU) overlap the
# Debian and npm installs (network and disk). `npm test` builds first (pretest): one test runs the
# build as it ships.
test-deps:
	@$(MAKE) --no-print-directory -j3 --output-sync=target install consumer-deps go-tools

# One after another: programs that share packages at the same versions (the Temporal CLI and
# server) compile them once, from Go's build cache.
go-tools:
	@$(MAKE) --no-print-directory $(GO_TOOLS) traced-go-service

test: test-deps
	$(NPM) run format:check
	$(NPM) run lint
	$(NPM) run typecheck
	$(NPM) test
	@$(MAKE) --no-print-directory test-consumers

# The Go and Python consumer libraries, each against a stack of its own (Temporal dev server,
# redis-server, the IAM emulator and the worker, on free loopback ports): every contract vector of
# test/contract/vectors.json and the real-stack scenarios.
CONSUMER_STACK := npx tsx test/support/with-consumer-stack.ts
test-consumers: install system-deps temporal-cli consumer-deps
	@unformatted=$$(cd consumers/go && gofmt -l .); [ -z "$$unformatted" ] || { echo "Not gofmt-formatted (run gofmt -w consumers/go): $$unformatted" >&2; exit 1; }
	cd consumers/go && go vet ./...
	cd consumers/go/tokenlifecycleotel && go vet ./... && go test -count=1 ./...
	$(CONSUMER_STACK) --cwd consumers/go -- go test -count=1 ./...
	$(CONSUMER_STACK) --cwd consumers/python -- $(PYTHON) -m pytest -q -p no:cacheprovider

# Redis: the one on 127.0.0.1:6379, or redis-server started by the demo (not installed here: a
# machine with a Redis needs none).
demo: install temporal-cli build
	@$(NPM) run --silent demo

clean:
	rm -rf dist .cache
