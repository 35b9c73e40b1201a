#!/usr/bin/env bash
# Prints the folder of a real Temporal server (the production server, not the CLI's dev server),
# building it once if needed:
#   <folder>/temporal-server     go.temporal.io/server/cmd/server
#   <folder>/temporal-sql-tool   go.temporal.io/server/cmd/tools/sql (creates and migrates schemas)
#   <folder>/schema/postgresql/v12/{temporal,visibility}   the module's own schema files
# The version is pinned in go.mod/go.sum beside this script (Go `tool`s), the same server version as
# the CLI's dev server (dev/temporal-cli/go.mod); the build is cached outside the checkout like the
# CLI's, so fresh clones reuse it. dev/temporal-server.ts runs it on PostgreSQL.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../go-tool.sh"

# One `go build` for both commands, so the packages they share compile once; the PostgreSQL schema
# comes from the same module.
build() {
  go build -mod=readonly -trimpath -ldflags "-s -w" -o "$out/" go.temporal.io/server/cmd/server go.temporal.io/server/cmd/tools/sql
  mv "$out/server" "$out/temporal-server"
  mv "$out/sql" "$out/temporal-sql-tool"
  local module_dir
  module_dir="$(go list -mod=readonly -m -f '{{.Dir}}' go.temporal.io/server)"
  mkdir -p "$out/schema/postgresql"
  cp -R "$module_dir/schema/postgresql/v12" "$out/schema/postgresql/v12"
  chmod -R u+w "$out/schema"
}

ensure_go_tool temporal-server "Temporal server and its SQL tool" go.temporal.io/server temporal-server temporal-sql-tool schema
