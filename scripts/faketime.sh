#!/usr/bin/env bash
# Prints the path of libfaketime (multi-threaded flavour), installing Debian's faketime
# package first when it is missing: the fleet tests skew one gateway's clock with it
# (LD_PRELOAD, FAKETIME="+3s").
set -euo pipefail
find_lib() { ls /usr/lib/*/faketime/libfaketimeMT.so.1 2>/dev/null | head -n1; }
if [ -z "$(find_lib)" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  exec 9>"${TMPDIR:-/tmp}/modelgate-faketime-install.lock"
  flock 9
  if [ -z "$(find_lib)" ]; then
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq faketime >/dev/null
  fi
fi
lib="$(find_lib)"
[ -n "$lib" ] || { echo "libfaketime not found after installing faketime" >&2; exit 1; }
echo "$lib"
