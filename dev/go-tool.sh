# Sourced by dev/<name>/ensure.sh: builds a pinned Go program once and prints where it is.
#
# Each dev/<name>/ holds a wrapper module whose go.mod/go.sum pin the program (a Go `tool`), so
# every machine builds the same binary. The build is cached outside the checkout, keyed by the
# version and a hash of go.mod and go.sum, so fresh clones reuse it and a changed pin builds anew. One build at a time per program: a test run, the
# demo and a second checkout may all ask at once on a new machine; the others wait for the first.
#
# Usage, from dev/<name>/ensure.sh:
#   build() { go build … -o "$out/<binary>" …; }   # $out: the folder to write; $version: the pin
#   ensure_go_tool <name> "<label>" <module> <binary>...
# Prints the binary's path (one binary) or the cache folder (several).

ensure_go_tool() {
  local name="$1" label="$2" module="$3"
  shift 3
  local binaries=("$@")
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
  version="$(awk -v m="$module" '$1 == m { print $2 }' "$here/go.mod")"
  local stamp
  stamp="$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)"
  local cache_dir="${TOKEN_LIFECYCLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/token-lifecycle-worker}/${name}-${version}-${stamp}"
  local result="$cache_dir"
  [[ ${#binaries[@]} -eq 1 ]] && result="$cache_dir/${binaries[0]}"

  if go_tool_built "$cache_dir" "${binaries[@]}"; then
    echo "$result"
    return 0
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "No ${label}: Go is not installed (the project builds ${module} ${version} from ${here}/go.mod)." >&2
    return 1
  fi

  mkdir -p "$cache_dir"
  exec 9>"$cache_dir/.build-lock"
  flock 9
  if go_tool_built "$cache_dir" "${binaries[@]}"; then
    echo "$result"
    return 0
  fi

  echo "Building ${label} ${version} once (minutes; cached in ${cache_dir})..." >&2
  local start
  start=$(date +%s)
  out="$cache_dir/.partial"
  rm -rf "$out" && mkdir -p "$out"
  # -mod=readonly (in each build): go.sum is the pin; a build must not change it.
  (cd "$here" && build) >&2
  local binary
  for binary in "${binaries[@]}"; do
    mv "$out/$binary" "$cache_dir/$binary"
  done
  rm -rf "$out"
  echo "Built ${label} ${version} in $(($(date +%s) - start)) s." >&2
  echo "$result"
}

go_tool_built() {
  local cache_dir="$1" binary
  shift
  for binary in "$@"; do
    [[ -x "$cache_dir/$binary" ]] || return 1
  done
}
