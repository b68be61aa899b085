#!/usr/bin/env bash
# Makes (once) a virtualenv with MLflow 3.17.2 (and its auth app) for the MLflow-registry tests
# and prints the path of its `mlflow` command:  MODELGATE_MLFLOW=$(scripts/mlflow-venv.sh)
set -euo pipefail
VERSION="${MLFLOW_VERSION:-3.17.2}"
# The `auth` extra brings the basic-auth app the registry-auth test runs.
venv="$("$(dirname "${BASH_SOURCE[0]}")/cached-venv.sh" \
  "${MODELGATE_MLFLOW_VENV:-$HOME/.cache/modelgate-mlflow-auth-$VERSION}" "mlflow[auth]==$VERSION")"
echo "$venv/bin/mlflow"
