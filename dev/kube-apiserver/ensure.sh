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
source "$(dirname "${BASH_SOURCE[0]}")/../go-tool.sh"

build() {
  local major="${version#v}" minor="${version#v*.}"
  major="${major%%.*}"
  minor="${minor%%.*}"
  local stamp_flags="-X k8s.io/component-base/version.gitVersion=${version} -X k8s.io/component-base/version.gitMajor=${major} -X k8s.io/component-base/version.gitMinor=${minor} -X k8s.io/component-base/version.gitTreeState=clean"
  CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w ${stamp_flags}" \
    -o "$out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
}

ensure_go_tool kube-apiserver "kube-apiserver" k8s.io/kubernetes kube-apiserver
