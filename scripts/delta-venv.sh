#!/usr/bin/env bash
# Makes (once) a virtualenv with the independent Delta readers the inference-table tests use
# (Python deltalake and DuckDB), and moto's S3-compatible server for the object-store test,
# and prints the path of its `python`:
#   MODELGATE_DELTA_PYTHON=$(scripts/delta-venv.sh)
set -euo pipefail
venv="${MODELGATE_DELTA_VENV:-$HOME/.cache/modelgate-delta-readers}"
mkdir -p "$(dirname "$venv")"
# One installer at a time (parallel test binaries may all ask); `.complete` marks a whole venv.
exec 9>"$venv.lock"
flock 9
# The marker names the package set: a venv made for an older set is made again.
marker="$venv/.complete-2"
if [ ! -f "$marker" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "deltalake==1.6.*" "pyarrow>=18" "duckdb>=1.1" "moto[server]==5.2.5" >&2
  touch "$marker"
fi
echo "$venv/bin/python"
