#!/usr/bin/env bash
# Prints the path of a Temporal CLI (which includes the dev server and its Web UI), building it
# once if needed (dev/go-tool.sh: pinned in go.mod/go.sum beside this script, cached outside the
# checkout). A `temporal` on the PATH of exactly that version (a package, a release download) is
# used as is.
#   TEMPORAL_CLI=/path/to/temporal  use that binary instead.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../go-tool.sh"

if [[ -n "${TEMPORAL_CLI:-}" ]]; then
  if [[ ! -x "$TEMPORAL_CLI" ]]; then
    echo "TEMPORAL_CLI=$TEMPORAL_CLI is not an executable file." >&2
    exit 1
  fi
  echo "$TEMPORAL_CLI"
  exit 0
fi

# `temporal --version` prints "temporal version 1.5.1 (Server …, UI …)".
pinned="$(awk '$1 == "github.com/temporalio/cli" { print $2 }' "$here/go.mod")"
if on_path="$(command -v temporal 2>/dev/null)" && [[ "$("$on_path" --version 2>/dev/null)" == "temporal version ${pinned#v} "* ]]; then
  echo "$on_path"
  exit 0
fi

build() {
  go build -mod=readonly -trimpath \
    -ldflags "-s -w -X github.com/temporalio/cli/temporalcli.Version=${version#v}" \
    -o "$out/temporal" github.com/temporalio/cli/cmd/temporal
}

ensure_go_tool temporal-cli "Temporal CLI" github.com/temporalio/cli temporal
