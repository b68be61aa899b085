#!/usr/bin/env bash
# Makes (once) a virtualenv at DIR with PACKAGES from PyPI and prints DIR. A marker named for
# the package list says the venv is whole and current: a venv made for another list is made
# again. One installer at a time (parallel test binaries and scripts may all ask).
#   scripts/cached-venv.sh DIR PACKAGE...
set -euo pipefail
venv="$1"
shift
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
marker="$venv/.complete-$(printf '%s\n' "$@" | sha256sum | cut -c1-12)"
if [ ! -f "$marker" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
  touch "$marker"
fi
echo "$venv"
