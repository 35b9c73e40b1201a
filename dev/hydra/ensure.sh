#!/usr/bin/env bash
# Prints the path of a pinned ORY Hydra binary (a second real IAM for the tests: the JWT-bearer
# grant through trust relationships, and the conformance tier), building it once if needed. The
# version is pinned in go.mod/go.sum beside this script (a Go `tool` of a wrapper module: `go
# install …@v2.3.0` refuses Hydra's own `replace` directives, so the wrapper repeats the one the
# build needs); CGO_ENABLED=0 (no SQLite, the tests give Hydra PostgreSQL). Cached outside the
# checkout like the Temporal server's (dev/temporal-server/ensure.sh), so fresh clones reuse it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../go-tool.sh"

build() {
  CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w -X github.com/ory/hydra/v2/driver/config.Version=${version}" \
    -o "$out/hydra" github.com/ory/hydra/v2
}

ensure_go_tool hydra "ORY Hydra" github.com/ory/hydra/v2 hydra
