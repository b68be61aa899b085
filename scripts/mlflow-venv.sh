#!/usr/bin/env bash
# Makes (once) a virtualenv with MLflow 3.17.2 (and its auth app) for the MLflow-registry tests and prints the path
# of its `mlflow` command:  MODELGATE_MLFLOW=$(scripts/mlflow-venv.sh)
set -euo pipefail
VERSION="${MLFLOW_VERSION:-3.17.2}"
# The `auth` extra brings the basic-auth app the registry-auth test runs.
venv="${MODELGATE_MLFLOW_VENV:-$HOME/.cache/modelgate-mlflow-auth-$VERSION}"
mkdir -p "$(dirname "$venv")"
# One installer at a time (parallel test binaries may all ask); `.complete` marks a whole venv.
exec 9>"$venv.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "mlflow[auth]==$VERSION" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/mlflow"
