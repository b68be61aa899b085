#!/usr/bin/env bash
# Prints the path of a haproxy binary, installing Debian's package first when there is none
# (the fleet tests put one in front of their gateways on a free loopback port).
set -euo pipefail
# Debian puts it in /usr/sbin, which a user's PATH may not hold.
PATH="$PATH:/usr/sbin"
if ! command -v haproxy >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # One install at a time when several test binaries ask at once.
  exec 9>"${TMPDIR:-/tmp}/modelgate-haproxy-install.lock"
  flock 9
  if ! command -v haproxy >/dev/null; then
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq haproxy >/dev/null
  fi
fi
command -v haproxy
