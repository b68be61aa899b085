#!/usr/bin/env bash
# What inference tables cost a request, in one run on one machine: the release gateway on the
# demo registry (ONNX Runtime, version 1, raw DEMO requests joined from the embedded store)
# with logging off, then with every request logged (auto_capture_config, sampling 1.0) to
# local Delta tables, under the same `hey` load (Debian package `hey`): a fixed rate, then
# unbounded. After each logged run the gateway is stopped with SIGTERM and the rows are
# counted in the committed tables, so the table shows what was actually written.
#
#   loadtests/inference_log.sh            # DURATION=10 CONCURRENCY=4 RATE=250
#
# hey is a closed-loop client: its percentiles are not corrected for coordinated omission.
set -euo pipefail
DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-4}"
RATE="${RATE:-250}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PYTHON="$(scripts/delta-venv.sh)"
trap 'kill $gw_pid 2>/dev/null || true; rm -rf "$work"' EXIT

config() {  # $1: capture block (or empty)
  cat <<YAML
$DEMO_FEATURES
registry: {path: models, watch: false}
control: {state_file: $work/state.json}
inference_log: {location: $work/tables}
endpoints:
  - name: t
    served_entities: [{entity_name: transactions, entity_version: "1", engine: ort}]
$1
YAML
}
config "" > "$work/off.yaml"
config "    auto_capture_config: {table_name_prefix: t}" > "$work/on.yaml"
write_raw_body "$work/raw.json"

# Rows in the committed payload table, by the Python deltalake reader.
logged_rows() {
  "$PYTHON" -c 'import sys; from deltalake import DeltaTable; print(DeltaTable(sys.argv[1]).to_pyarrow_table().num_rows)' "$work/tables/t_payload"
}

run() { hey_row "$1" "$work/raw.json" "$2"; }  # $1: label, $2: load (rate|max)

stop_gateway() {
  kill -TERM "$gw_pid"; wait "$gw_pid" || true; gw_pid=""
}

echo "hey -z ${DURATION}s -c $CONCURRENCY, one raw DEMO row per request (embedded feature join); $(nproc) cores"
echo
echo "| load | inference tables | req/s | p50 ms | p90 ms | p99 ms | non-2xx status lines | rows committed / answered |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for load in rate max; do
  start_gateway "$work/off.yaml"
  run "off" "$load"; echo " - |"
  stop_gateway
  rm -rf "$work/tables"
  start_gateway "$work/on.yaml"
  run "on (every request)" "$load"
  stop_gateway
  echo " $(logged_rows) / $(answered) |"
done
