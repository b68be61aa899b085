#!/usr/bin/env bash
# Makes (once) a virtualenv with what models/train.py needs (models/requirements.txt),
# MLflow 3.17.2 and boto3 (for artifacts in S3), the environment of a scikit-learn user who
# logs models to MLflow, and prints the path of its `python`:
#   MODELGATE_TRAIN_PYTHON=$(scripts/train-venv.sh)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mapfile -t requirements < <(grep -v -e '^#' -e '^$' "$here/../models/requirements.txt")
venv="$("$here/cached-venv.sh" \
  "${MODELGATE_TRAIN_VENV:-$HOME/.cache/modelgate-train}" "${requirements[@]}" "mlflow==3.17.2" "boto3")"
echo "$venv/bin/python"
