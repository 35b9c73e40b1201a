#!/usr/bin/env bash
# Prints the path of a pinned Helm v4 binary (the chart's tests: `helm lint --strict`, `helm
# template`, `helm install` into the suite's kube-apiserver), building it once if needed. The
# version is pinned in go.mod/go.sum beside this script (a Go `tool` of a wrapper module, like
# dev/hydra); CGO_ENABLED=0. Cached outside the checkout like Hydra's, so fresh clones reuse it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

version="$(awk '$1 == "helm.sh/helm/v4" { print $2 }' "$here/go.mod")"
stamp="$( (cat "$here/go.mod" "$here/go.sum") | sha256sum | cut -c1-12)"
cache_dir="${TOKEN_LIFECYCLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/token-lifecycle-worker}/helm-${version}-${stamp}"

if [[ -x "$cache_dir/helm" ]]; then
  echo "$cache_dir/helm"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "No Helm: Go is not installed (the project builds helm.sh/helm/v4 ${version} from $here/go.mod)." >&2
  exit 1
fi

mkdir -p "$cache_dir"
# One build at a time.
exec 9>"$cache_dir/.build-lock"
flock 9
if [[ -x "$cache_dir/helm" ]]; then
  echo "$cache_dir/helm"
  exit 0
fi

echo "Building Helm ${version} once (minutes; cached in ${cache_dir})..." >&2
start=$(date +%s)
(
  cd "$here"
  # -mod=readonly: go.sum is the pin; a build must not change it. The -X sets what `helm version`
  # prints (Helm's own Makefile does the same).
  CGO_ENABLED=0 go build -mod=readonly -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${version}" \
    -o "$cache_dir/helm.partial" helm.sh/helm/v4/cmd/helm
  mv "$cache_dir/helm.partial" "$cache_dir/helm"
) >&2
echo "Built Helm ${version} in $(( $(date +%s) - start )) s." >&2
echo "$cache_dir/helm"
