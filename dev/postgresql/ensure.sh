#!/usr/bin/env bash
# PostgreSQL for the real Temporal server (dev/temporal-server.ts). Uses the one that answers on
# PGHOST:PGPORT (default 127.0.0.1:5432). Where none does, installs Debian's `postgresql`, starts
# it, and lets the user `postgres` connect over TCP from 127.0.0.1 without a password (trust), as on
# the project's machines; the tests create and drop databases of their own there.
set -euo pipefail
host="${PGHOST:-127.0.0.1}"
port="${PGPORT:-5432}"

answers() { command -v pg_isready >/dev/null && pg_isready -q -h "$host" -p "$port"; }
answers && exit 0

if [[ "$host" != 127.0.0.1 || "$port" != 5432 || "$(id -u)" != 0 ]]; then
  echo "No PostgreSQL answers on $host:$port: start one (apt-get install postgresql), or point PGHOST/PGPORT/PGUSER/PGPASSWORD at one." >&2
  exit 1
fi
echo "Installing postgresql (Debian package) for the Temporal server tests…" >&2
command -v pg_ctlcluster >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql >&2; }
for hba in /etc/postgresql/*/main/pg_hba.conf; do
  grep -qE '^host\s+all\s+postgres\s+127\.0\.0\.1/32\s+trust' "$hba" || sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
done
for cluster in /etc/postgresql/*/main; do
  version="$(basename "$(dirname "$cluster")")"
  pg_ctlcluster "$version" main start 2>/dev/null || pg_ctlcluster "$version" main reload
done
for _ in $(seq 60); do answers && exit 0; sleep 0.5; done
echo "PostgreSQL was installed but does not answer on $host:$port." >&2
exit 1
