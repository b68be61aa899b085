#!/usr/bin/env bash
# Makes (once) a virtualenv with the independent Delta readers the inference-table tests use
# (Python deltalake and DuckDB), and moto's S3-compatible server for the object-store test,
# and prints the path of its `python`:
#   MODELGATE_DELTA_PYTHON=$(scripts/delta-venv.sh)
set -euo pipefail
venv="$("$(dirname "${BASH_SOURCE[0]}")/cached-venv.sh" \
  "${MODELGATE_DELTA_VENV:-$HOME/.cache/modelgate-delta-readers}" \
  "deltalake==1.6.*" "pyarrow>=18" "duckdb>=1.1" "moto[server]==5.2.5")"
echo "$venv/bin/python"
