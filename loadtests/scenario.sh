#!/usr/bin/env bash
# Runs one load-test scenario (docs/loadtests.md) with everything it needs: builds the release
# gateway and the release scenario binary, fetches ONNX Runtime (versions 2 runs only on it),
# then runs, for example:
#   loadtests/scenario.sh steady --duration 30s
#   loadtests/scenario.sh ab --rate 150
# Exit status: the scenario's (0 passed, 1 a check failed, 2 the run could not complete).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/modelgate-target}"
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)"
  export ORT_DYLIB_PATH
fi
cargo build --release --locked --bin modelgate >&2
cargo build --release --locked -p modelgate-loadtest >&2
# The scenarios find this checkout by CARGO_MANIFEST_DIR, as under `cargo run`: the binary in the
# shared target folder may have been built in another one.
CARGO_MANIFEST_DIR="$PWD/loadtests/scenarios" exec "$CARGO_TARGET_DIR/release/modelgate-loadtest" "$@"
