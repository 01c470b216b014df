#!/usr/bin/env bash
# Builds the Redis and Valkey releases the servers suite runs on (spec/servers.test.ts,
# spec/acl.test.ts) into DIR/<name>/{redis-server,redis-cli}, the layout of ../shared/servers:
#   scripts/build-servers.sh DIR
# From the upstream release sources, `make MALLOC=libc` (no jemalloc, no TLS), as in
# ../shared/servers/README.md. A folder already holding both binaries is kept (CI caches DIR).
set -euo pipefail
dir=${1:?usage: scripts/build-servers.sh DIR}
mkdir -p "$dir"
build() { # name url binary-prefix
  local name=$1 url=$2 prefix=$3
  if [ -x "$dir/$name/redis-server" ] && [ -x "$dir/$name/redis-cli" ]; then
    echo "$name: already built"; return
  fi
  local work
  work=$(mktemp -d)
  curl -fsSL "$url" | tar -xz -C "$work" --strip-components=1
  make -C "$work" -j"$(nproc)" MALLOC=libc BUILD_TLS=no >/dev/null
  mkdir -p "$dir/$name"
  cp "$work/src/$prefix-server" "$dir/$name/redis-server"
  cp "$work/src/$prefix-cli" "$dir/$name/redis-cli"
  strip "$dir/$name/redis-server" "$dir/$name/redis-cli"
  rm -rf "$work"
  "$dir/$name/redis-server" --version
}
build redis-5.0.14 https://download.redis.io/releases/redis-5.0.14.tar.gz redis
build redis-6.2.16 https://download.redis.io/releases/redis-6.2.16.tar.gz redis
build valkey-7.2.7 https://github.com/valkey-io/valkey/archive/refs/tags/7.2.7.tar.gz valkey
build valkey-8.0.1 https://github.com/valkey-io/valkey/archive/refs/tags/8.0.1.tar.gz valkey
