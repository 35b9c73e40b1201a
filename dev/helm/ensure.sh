#!/usr/bin/env bash
# Prints the path of a pinned Helm v4 binary (the chart's tests: `helm lint --strict`, `helm
# template`, `helm install` into the suite's kube-apiserver), building it once if needed. The
# version is pinned in go.mod/go.sum beside this script (a Go `tool` of a wrapper module, like
# dev/hydra); CGO_ENABLED=0. Cached outside the checkout like Hydra's, so fresh clones reuse it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../go-tool.sh"

# The -X sets what `helm version` prints (Helm's own Makefile does the same).
build() {
  CGO_ENABLED=0 go build -mod=readonly -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${version}" \
    -o "$out/helm" helm.sh/helm/v4/cmd/helm
}

ensure_go_tool helm "Helm" helm.sh/helm/v4 helm
