#!/usr/bin/env bash
# Prints the path of a Temporal CLI (which includes the dev server and its Web UI), building it
# once if needed. The version is pinned in go.mod/go.sum beside this script (a Go `tool`), so every
# machine builds the same binary; the build is cached outside the checkout so fresh clones reuse it.
# A `temporal` on the PATH of exactly that version (a package, a release download) is used as is.
#   TEMPORAL_CLI=/path/to/temporal  use that binary instead.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ -n "${TEMPORAL_CLI:-}" ]]; then
  if [[ ! -x "$TEMPORAL_CLI" ]]; then
    echo "TEMPORAL_CLI=$TEMPORAL_CLI is not an executable file." >&2
    exit 1
  fi
  echo "$TEMPORAL_CLI"
  exit 0
fi

version="$(awk '$1 == "github.com/temporalio/cli" { print $2 }' "$here/go.mod")"
stamp="$( (cat "$here/go.mod" "$here/go.sum") | sha256sum | cut -c1-12)"
cache_dir="${TOKEN_LIFECYCLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/token-lifecycle-worker}/temporal-cli-${version}-${stamp}"
binary="$cache_dir/temporal"

if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi

# `temporal --version` prints "temporal version 1.5.1 (Server …, UI …)".
if on_path="$(command -v temporal 2>/dev/null)" && [[ "$("$on_path" --version 2>/dev/null)" == "temporal version ${version#v} "* ]]; then
  echo "$on_path"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  cat >&2 <<MSG
No Temporal CLI: Go is not installed and TEMPORAL_CLI is not set.
Either install Go $(awk '$1 == "go" { print $2 }' "$here/go.mod") or later (the project builds Temporal CLI ${version} from go.mod), or
put Temporal CLI ${version} on the PATH, or run with TEMPORAL_CLI=/path/to/temporal.
MSG
  exit 1
fi

mkdir -p "$cache_dir"
# One build at a time: a test run, the demo and a second checkout may all ask at once on a new
# machine; the others wait for the first and take its binary.
exec 9>"$cache_dir/.build-lock"
flock 9
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi

echo "Building Temporal CLI ${version} once (about 8 minutes on 2 cores; cached in ${cache_dir})..." >&2
start=$(date +%s)
(
  cd "$here"
  # -mod=readonly: go.sum is the pin; a build must not change it.
  go build -mod=readonly -trimpath \
    -ldflags "-s -w -X github.com/temporalio/cli/temporalcli.Version=${version#v}" \
    -o "$binary.partial" github.com/temporalio/cli/cmd/temporal
) >&2
mv "$binary.partial" "$binary"
echo "Built Temporal CLI ${version} in $(( $(date +%s) - start )) s." >&2
echo "$binary"
