#!/usr/bin/env bash
# Prints the path of a pinned Jaeger binary (the tracing backend the tests export to and read
# traces back from: test/support/jaeger.ts), building it once if needed. The version is pinned in
# go.mod/go.sum beside this script (a Go `tool` of a wrapper module, as dev/hydra/ensure.sh does).
# Jaeger v1.75.0's cmd/jaeger is the v2 binary (an OpenTelemetry Collector distribution taking a
# YAML config). Cached outside the checkout like Hydra's, so fresh clones reuse it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

version="$(awk '$1 == "github.com/jaegertracing/jaeger" { print $2 }' "$here/go.mod")"
stamp="$( (cat "$here/go.mod" "$here/go.sum") | sha256sum | cut -c1-12)"
cache_dir="${TOKEN_LIFECYCLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/token-lifecycle-worker}/jaeger-${version}-${stamp}"

if [[ -x "$cache_dir/jaeger" ]]; then
  echo "$cache_dir/jaeger"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "No Jaeger: Go is not installed (the project builds github.com/jaegertracing/jaeger ${version} from $here/go.mod)." >&2
  exit 1
fi

mkdir -p "$cache_dir"
# One build at a time.
exec 9>"$cache_dir/.build-lock"
flock 9
if [[ -x "$cache_dir/jaeger" ]]; then
  echo "$cache_dir/jaeger"
  exit 0
fi

echo "Building Jaeger ${version} once (minutes; cached in ${cache_dir})..." >&2
start=$(date +%s)
(
  cd "$here"
  # -mod=readonly: go.sum is the pin; a build must not change it.
  CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" \
    -o "$cache_dir/jaeger.partial" github.com/jaegertracing/jaeger/cmd/jaeger
  mv "$cache_dir/jaeger.partial" "$cache_dir/jaeger"
) >&2
echo "Built Jaeger ${version} in $(( $(date +%s) - start )) s." >&2
echo "$cache_dir/jaeger"
