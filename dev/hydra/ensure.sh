#!/usr/bin/env bash
# Prints the path of a pinned ORY Hydra binary (a second real IAM for the tests: the JWT-bearer
# grant through trust relationships, and the conformance tier), building it once if needed. The
# version is pinned in go.mod/go.sum beside this script (a Go `tool` of a wrapper module: `go
# install …@v2.3.0` refuses Hydra's own `replace` directives, so the wrapper repeats the one the
# build needs); CGO_ENABLED=0 (no SQLite, the tests give Hydra PostgreSQL). Cached outside the
# checkout like the Temporal server's (dev/temporal-server/ensure.sh), so fresh clones reuse it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

version="$(awk '$1 == "github.com/ory/hydra/v2" { print $2 }' "$here/go.mod")"
stamp="$( (cat "$here/go.mod" "$here/go.sum") | sha256sum | cut -c1-12)"
cache_dir="${TOKEN_LIFECYCLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/token-lifecycle-worker}/hydra-${version}-${stamp}"

if [[ -x "$cache_dir/hydra" ]]; then
  echo "$cache_dir/hydra"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "No Hydra: Go is not installed (the project builds github.com/ory/hydra/v2 ${version} from $here/go.mod)." >&2
  exit 1
fi

mkdir -p "$cache_dir"
# One build at a time.
exec 9>"$cache_dir/.build-lock"
flock 9
if [[ -x "$cache_dir/hydra" ]]; then
  echo "$cache_dir/hydra"
  exit 0
fi

echo "Building ORY Hydra ${version} once (minutes; cached in ${cache_dir})..." >&2
start=$(date +%s)
(
  cd "$here"
  # -mod=readonly: go.sum is the pin; a build must not change it.
  CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w -X github.com/ory/hydra/v2/driver/config.Version=${version}" \
    -o "$cache_dir/hydra.partial" github.com/ory/hydra/v2
  mv "$cache_dir/hydra.partial" "$cache_dir/hydra"
) >&2
echo "Built ORY Hydra ${version} in $(( $(date +%s) - start )) s." >&2
echo "$cache_dir/hydra"
