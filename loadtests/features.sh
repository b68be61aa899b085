#!/usr/bin/env bash
# What the online-feature join adds to a request, per store, in one run on one machine.
#
# Runs the release gateway on the demo registry (ONNX Runtime, version 1) three times against
# the same `hey` load (Debian package `hey`): requests that carry every feature the model
# takes (no lookup: the baseline), raw requests joined from the embedded store, and raw
# requests joined from a real redis-server (scripts/redis-server.sh) on a loopback port.
# Prints a markdown table of throughput and latency percentiles; the join's cost is the
# difference from the baseline.
#
#   loadtests/features.sh            # DURATION=10 CONCURRENCY=4 RATE=250
#
# hey is a closed-loop client: its percentiles are not corrected for coordinated omission.
set -euo pipefail
DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-4}"
RATE="${RATE:-250}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
REDIS="$(scripts/redis-server.sh)"
redis_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$REDIS" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > /dev/null &
redis_pid=$!
trap 'kill $gw_pid $redis_pid 2>/dev/null || true; rm -rf "$work"' EXIT

tables() {  # $1: store
  cat <<YAML
$(store_features "$1" "$redis_port")
registry: {path: models, watch: false}
control: {state_file: $work/state.json}
endpoints:
  - name: t
    served_entities: [{entity_name: transactions, entity_version: "1", engine: ort}]
YAML
}
tables embedded > "$work/embedded.yaml"
tables redis > "$work/redis.yaml"
sleep 0.5
"$bin" features load --config "$work/redis.yaml" >&2

python3 - "$work" <<'PY'
import json, sys
f = json.load(open("tests/fixtures/transactions_join_cases.json"))
row = 0
json.dump({"dataframe_split": {"columns": f["columns"], "data": [f["data"][row]]}}, open(sys.argv[1] + "/raw.json", "w"))
json.dump({"dataframe_split": {"columns": f["joined"]["columns"], "data": [f["joined"]["data"][row]]}},
          open(sys.argv[1] + "/full.json", "w"))
PY

run() { hey_row "$@"; echo; }  # $1: label, $2: body, $3: load (rate|max)

echo "hey -z ${DURATION}s -c $CONCURRENCY, one row per request; $(nproc) cores"
echo
echo "| load | request | req/s | p50 ms | p90 ms | p99 ms | non-2xx status lines |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for load in rate max; do
  start_gateway "$work/embedded.yaml"
  run "all features sent (no lookup)" "$work/full.json" "$load"
  run "raw, embedded store" "$work/raw.json" "$load"
  start_gateway "$work/redis.yaml"
  run "raw, redis store" "$work/raw.json" "$load"
done
