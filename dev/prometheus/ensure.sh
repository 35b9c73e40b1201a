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
source "$(dirname "${BASH_SOURCE[0]}")/../go-tool.sh"

# One `go build` for both commands, so the packages they share compile once.
build() {
  CGO_ENABLED=0 go build -mod=readonly -trimpath -tags remove_all_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${version#v}" \
    -o "$out/" github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool
}

ensure_go_tool prometheus "Prometheus and promtool" github.com/prometheus/prometheus prometheus promtool
