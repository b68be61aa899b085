#!/usr/bin/env bash
# Makes (once) a virtualenv with the third-party clients the client tests drive unmodified
# (databricks-sdk, tritonclient), and prints the path of its `python`:
#   MODELGATE_CLIENTS_PYTHON=$(scripts/clients-venv.sh)
set -euo pipefail
venv="$("$(dirname "${BASH_SOURCE[0]}")/cached-venv.sh" \
  "${MODELGATE_CLIENTS_VENV:-$HOME/.cache/modelgate-clients}" \
  "databricks-sdk==0.167.0" "tritonclient[http,grpc]==2.73.0")"
echo "$venv/bin/python"
