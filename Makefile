# The README's two commands: `make demo` and `make test`. Both install what is missing first.
# Node.js 24 comes from the `node` devDependency: npm scripts put it first on the PATH.

SHELL := /bin/bash
NPM_STAMP := node_modules/.install-stamp

.PHONY: all install system-deps temporal-cli temporal-server build lint typecheck test demo clean

all: build

# Debian's redis-server for the tests' own Redis servers (present on this kind of machine),
# Debian's Chromium for the browser test of the Temporal UI (driven by playwright-core), and for the
# production-topology tests: redis-sentinel, PostgreSQL (dev/postgresql/ensure.sh), Docker's engine
# and debootstrap (the image test builds its base image from Debian).
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
	@command -v docker-compose >/dev/null || { \
	  echo "Installing docker-compose (Debian package, to validate docker-compose.yml)…"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq docker-compose; \
	  else echo "docker-compose is missing: sudo apt-get install docker-compose" >&2; exit 1; fi; }

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: $(NPM_STAMP)

# The pinned Temporal CLI (dev server + Web UI), built once from dev/temporal-cli/go.mod.
temporal-cli:
	@bash dev/temporal-cli/ensure.sh >/dev/null

# The pinned Temporal server and temporal-sql-tool (PostgreSQL), built once from dev/temporal-server/go.mod.
temporal-server:
	@bash dev/temporal-server/ensure.sh >/dev/null

build: install
	npm run build

lint: install
	npm run lint

typecheck: install
	npm run typecheck

# `npm test` builds first (pretest): one test runs the build as it ships.
test: install system-deps temporal-cli temporal-server
	npm run lint
	npm run typecheck
	npm test

demo: install temporal-cli build
	npm run demo

clean:
	rm -rf dist .cache
