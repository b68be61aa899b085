#!/usr/bin/env bash
# Makes (once) a virtualenv with the independent Delta readers the inference-table tests use
# (Python deltalake and DuckDB) and prints the path of its `python`:
#   MODELGATE_DELTA_PYTHON=$(scripts/delta-venv.sh)
set -euo pipefail
venv="${MODELGATE_DELTA_VENV:-$HOME/.cache/modelgate-delta-readers}"
mkdir -p "$(dirname "$venv")"
# One installer at a time (parallel test binaries may all ask); `.complete` marks a whole venv.
exec 9>"$venv.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "deltalake==1.6.*" "pyarrow>=18" "duckdb>=1.1" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
