#!/usr/bin/env bash
# Prints the folder of a pinned Prometheus, building it once if needed:
#   <folder>/prometheus   github.com/prometheus/prometheus/cmd/prometheus (the end-to-end alert test)
#   <folder>/promtool     github.com/prometheus/prometheus/cmd/promtool   (check rules, test rules)
# The version is pinned in go.mod/go.sum beside this script (Go `tool`s of a wrapper module); the
# build is cached outside the checkout like Hydra's (dev/hydra/ensure.sh), so fresh clones reuse it.
# The tests scrape static targets only, so the build tag `remove_all_sd` leaves out every optional
# service discovery (cloud SDKs; static, file and HTTP discovery stay). promtool imports Kubernetes
# discovery itself, whatever the tag, so the tag trims the server's build, not promtool's.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

version="$(awk '$1 == "github.com/prometheus/prometheus" { print $2 }' "$here/go.mod")"
stamp="$( (cat "$here/go.mod" "$here/go.sum" "${BASH_SOURCE[0]}") | sha256sum | cut -c1-12)"
cache_dir="${TOKEN_LIFECYCLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/token-lifecycle-worker}/prometheus-${version}-${stamp}"

built() { [[ -x "$cache_dir/prometheus" && -x "$cache_dir/promtool" ]]; }
if built; then
  echo "$cache_dir"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "No Prometheus: Go is not installed (the project builds github.com/prometheus/prometheus ${version} from $here/go.mod)." >&2
  exit 1
fi

mkdir -p "$cache_dir"
# One build at a time.
exec 9>"$cache_dir/.build-lock"
flock 9
if built; then
  echo "$cache_dir"
  exit 0
fi

echo "Building Prometheus ${version} and promtool once (minutes; cached in ${cache_dir})..." >&2
start=$(date +%s)
(
  cd "$here"
  # -mod=readonly: go.sum is the pin; a build must not change it. One `go build` for both
  # commands, so the packages they share compile once.
  partial="$cache_dir/bin.partial"
  rm -rf "$partial" && mkdir -p "$partial"
  CGO_ENABLED=0 go build -mod=readonly -trimpath -tags remove_all_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${version#v}" \
    -o "$partial/" github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool
  mv "$partial/promtool" "$cache_dir/promtool"
  mv "$partial/prometheus" "$cache_dir/prometheus"
  rmdir "$partial"
) >&2
echo "Built Prometheus ${version} in $(( $(date +%s) - start )) s." >&2
echo "$cache_dir"
