#!/usr/bin/env bash
# Runs npm on the project's Node.js (the `node` devDependency, at package-lock.json's version) rather
# than on whatever node comes first on the PATH: npm checks every package's engines against the
# node that runs it, and an older one prints an EBADENGINE warning for the project and half its
# packages. Before the first install that Node.js is not in node_modules yet: `npm exec` fetches it
# once into npm's cache and runs the install on it.
#   dev/npm.sh ci --no-audit --no-fund      dev/npm.sh run demo
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
project_node="$root/node_modules/.bin/node"
npm_cli="$(readlink -f "$(command -v npm)")"

if [[ -x "$project_node" && "$npm_cli" == *.js ]]; then
  exec "$project_node" "$npm_cli" "$@"
fi
version="$(sed -n '/"node_modules\/node": {/,/}/s/^ *"version": "\([^"]*\)".*/\1/p' "$root/package-lock.json")"
if [[ -z "$version" ]]; then
  echo "package-lock.json names no node devDependency: running npm on $(node --version)" >&2
  exec npm "$@"
fi
# npm_execpath is the npm that runs `npm exec`: the same npm, now on the project's Node.js.
exec npm exec --yes --package="node@$version" -- sh -c 'exec node "$npm_execpath" "$@"' sh "$@"
