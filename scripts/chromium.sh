#!/usr/bin/env bash
# Prints the path of a chromium binary, installing Debian's package first when there is none
# (the status-page test loads the page in it, headless, and saves a screenshot).
set -euo pipefail
if ! command -v chromium >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # One install at a time when several test binaries ask at once.
  exec 9>"${TMPDIR:-/tmp}/modelgate-chromium-install.lock"
  flock 9
  if ! command -v chromium >/dev/null; then
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  fi
fi
command -v chromium
