#!/usr/bin/env bash
# Prints the path of a redis-server binary, installing Debian's package first when there is
# none (the Redis online-store tests start their own server on a free loopback port).
set -euo pipefail
if ! command -v redis-server >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # One install at a time when several test binaries ask at once.
  exec 9>"${TMPDIR:-/tmp}/modelgate-redis-install.lock"
  flock 9
  if ! command -v redis-server >/dev/null; then
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  fi
fi
command -v redis-server
