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
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

version="$(awk '$1 == "go.temporal.io/server" { print $2 }' "$here/go.mod")"
stamp="$( (cat "$here/go.mod" "$here/go.sum") | sha256sum | cut -c1-12)"
cache_dir="${TOKEN_LIFECYCLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/token-lifecycle-worker}/temporal-server-${version}-${stamp}"

built() { [[ -x "$cache_dir/temporal-server" && -x "$cache_dir/temporal-sql-tool" && -f "$cache_dir/schema/postgresql/v12/temporal/schema.sql" ]]; }
if built; then
  echo "$cache_dir"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "No Temporal server: Go is not installed (the project builds go.temporal.io/server ${version} from $here/go.mod)." >&2
  exit 1
fi

mkdir -p "$cache_dir"
# One build at a time, as dev/temporal-cli/ensure.sh does.
exec 9>"$cache_dir/.build-lock"
flock 9
if built; then
  echo "$cache_dir"
  exit 0
fi

echo "Building Temporal server ${version} and its SQL tool once (a few minutes; cached in ${cache_dir})..." >&2
start=$(date +%s)
(
  cd "$here"
  # -mod=readonly: go.sum is the pin; a build must not change it. One `go build` for both
  # commands, so the packages they share compile once.
  partial="$cache_dir/bin.partial"
  rm -rf "$partial" && mkdir -p "$partial"
  go build -mod=readonly -trimpath -ldflags "-s -w" -o "$partial/" go.temporal.io/server/cmd/server go.temporal.io/server/cmd/tools/sql
  module_dir="$(go list -mod=readonly -m -f '{{.Dir}}' go.temporal.io/server)"
  rm -rf "$cache_dir/schema" && mkdir -p "$cache_dir/schema/postgresql"
  cp -R "$module_dir/schema/postgresql/v12" "$cache_dir/schema/postgresql/v12"
  chmod -R u+w "$cache_dir/schema"
  mv "$partial/sql" "$cache_dir/temporal-sql-tool"
  mv "$partial/server" "$cache_dir/temporal-server"
  rmdir "$partial"
) >&2
echo "Built Temporal server ${version} in $(( $(date +%s) - start )) s." >&2
echo "$cache_dir"
