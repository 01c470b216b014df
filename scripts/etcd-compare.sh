#!/usr/bin/env bash
# docs/performance.md's etcd comparison: installs Debian's etcd-server if `etcd` is missing
# (apt-get update first; it needs root), builds, and runs the bench's peers family
# (scripts/bench/peers.ts), which starts its own etcd and redis-server instances on loopback
# (ports 7890-7895) and stops them at the end. Arguments go to it: --rounds N, --seconds S, --quick.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v etcd >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server
  # The package enables a service; the comparison starts its own instances instead.
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then systemctl stop etcd; fi
fi
etcd --version | head -1
npm run --silent build:test
node build/scripts/bench/peers.js "$@"
