#!/usr/bin/env bash
# Prints the path of a pinned kube-apiserver binary (the suite's Kubernetes control plane, without
# a kubelet: test/support/kube-apiserver.ts runs it on Debian's etcd-server), building it once if
# needed. The version is pinned in go.mod/go.sum beside this script (a Go `tool` of a wrapper
# module: k8s.io/kubernetes replaces its k8s.io/* staging modules with its own tree, and a
# `replace` applies only in the main module, so the wrapper points each at its published release).
# CGO_ENABLED=0, as Kubernetes releases build it. The version is stamped the way Kubernetes' own
# build does (hack/lib/version.sh), so /version names it. Cached outside the checkout like the
# Temporal server's (dev/temporal-server/ensure.sh), so fresh clones reuse it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

version="$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$here/go.mod")"
stamp="$( (cat "$here/go.mod" "$here/go.sum") | sha256sum | cut -c1-12)"
cache_dir="${TOKEN_LIFECYCLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/token-lifecycle-worker}/kube-apiserver-${version}-${stamp}"

if [[ -x "$cache_dir/kube-apiserver" ]]; then
  echo "$cache_dir/kube-apiserver"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "No kube-apiserver: Go is not installed (the project builds k8s.io/kubernetes ${version} from $here/go.mod)." >&2
  exit 1
fi

mkdir -p "$cache_dir"
# One build at a time.
exec 9>"$cache_dir/.build-lock"
flock 9
if [[ -x "$cache_dir/kube-apiserver" ]]; then
  echo "$cache_dir/kube-apiserver"
  exit 0
fi

echo "Building kube-apiserver ${version} once (about 11 minutes on 2 cores; cached in ${cache_dir})..." >&2
start=$(date +%s)
(
  cd "$here"
  minor="${version#v*.}"
  minor="${minor%%.*}"
  major="${version#v}"
  major="${major%%.*}"
  stamp_flags="-X k8s.io/component-base/version.gitVersion=${version} -X k8s.io/component-base/version.gitMajor=${major} -X k8s.io/component-base/version.gitMinor=${minor} -X k8s.io/component-base/version.gitTreeState=clean"
  # -mod=readonly: go.sum is the pin; a build must not change it.
  CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w ${stamp_flags}" \
    -o "$cache_dir/kube-apiserver.partial" k8s.io/kubernetes/cmd/kube-apiserver
  mv "$cache_dir/kube-apiserver.partial" "$cache_dir/kube-apiserver"
) >&2
echo "Built kube-apiserver ${version} in $(( $(date +%s) - start )) s." >&2
echo "$cache_dir/kube-apiserver"
