#!/usr/bin/env bash
# Prints the path of a prometheus binary (promtool is installed beside it), installing Debian's
# package first when either is missing (the Prometheus test checks the alerting rules with
# promtool and starts its own server on a free loopback port).
set -euo pipefail
have() { command -v prometheus >/dev/null && command -v promtool >/dev/null; }
if ! have; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # One install at a time when several test binaries ask at once.
  exec 9>"${TMPDIR:-/tmp}/modelgate-prometheus-install.lock"
  flock 9
  if ! have; then
    $SUDO apt-get update -qq >/dev/null
    # Without recommends: no node exporter service comes along.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      prometheus >/dev/null
  fi
fi
command -v prometheus
