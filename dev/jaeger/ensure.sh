#!/usr/bin/env bash
# Prints the path of a pinned Jaeger binary (the tracing backend the tests export to and read
# traces back from: test/support/jaeger.ts), building it once if needed. The version is pinned in
# go.mod/go.sum beside this script (a Go `tool` of a wrapper module, as dev/hydra/ensure.sh does).
# Jaeger v1.75.0's cmd/jaeger is the v2 binary (an OpenTelemetry Collector distribution taking a
# YAML config). Cached outside the checkout like Hydra's, so fresh clones reuse it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../go-tool.sh"

build() {
  CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" \
    -o "$out/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger
}

ensure_go_tool jaeger "Jaeger" github.com/jaegertracing/jaeger jaeger
