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
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-4}"
RATE="${RATE:-250}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/modelgate-target}"
command -v hey >/dev/null || { echo "needs hey: apt-get install -y hey" >&2; exit 2; }
ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)"
export ORT_DYLIB_PATH
REDIS="$(scripts/redis-server.sh)"
cargo build --release --locked --bin modelgate >&2
bin="$CARGO_TARGET_DIR/release/modelgate"

work="$(mktemp -d)"
gw_pid=""
redis_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$REDIS" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > /dev/null &
redis_pid=$!
trap 'kill $gw_pid $redis_pid 2>/dev/null || true; rm -rf "$work"' EXIT

tables() {  # $1: store
  cat <<YAML
features:
  store: $1
  redis: {url: "redis://127.0.0.1:$redis_port"}
  tables:
    - {name: transaction_count_ft, path: models/feature_tables/transaction_count_ft.jsonl, primary_keys: [CustomerID], event_timestamp: eventTimestamp}
    - {name: product_3minute_max_price_ft, path: models/feature_tables/product_3minute_max_price_ft.jsonl, primary_keys: [Product], timestamp_key: LookupTimestamp}
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

percentile() { awk -v p="$1%" '$1 == p && $2 == "in" { print $3 * 1000 }' "$2"; }
serve() {  # $1: config
  [ -n "$gw_pid" ] && { kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; }
  RUST_LOG=warn "$bin" serve --config "$1" --listen 127.0.0.1:0 > "$work/out" 2> "$work/err" &
  gw_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
  base="$(sed -n 's/^modelgate listening on //p' "$work/out")"
}
run() {  # $1: label, $2: body, $3: load (rate|max)
  limit=()
  [ "$3" = rate ] && limit=(-q "$RATE")
  hey -z "${DURATION}s" -c "$CONCURRENCY" "${limit[@]}" -m POST -T application/json -D "$2" \
    "$base/serving-endpoints/t/invocations" > "$work/h.txt"
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$([ "$3" = rate ] && echo "$((RATE * CONCURRENCY)) req/s" || echo unbounded)" "$1" \
    "$(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$work/h.txt")" \
    "$(percentile 50 "$work/h.txt")" "$(percentile 90 "$work/h.txt")" "$(percentile 99 "$work/h.txt")" \
    "$(grep -c '^\s*\[[45][0-9][0-9]\]' "$work/h.txt" || true)"
}

echo "hey -z ${DURATION}s -c $CONCURRENCY, one row per request; $(nproc) cores"
echo
echo "| load | request | req/s | p50 ms | p90 ms | p99 ms | non-2xx status lines |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for load in rate max; do
  serve "$work/embedded.yaml"
  run "all features sent (no lookup)" "$work/full.json" "$load"
  run "raw, embedded store" "$work/raw.json" "$load"
  serve "$work/redis.yaml"
  run "raw, redis store" "$work/raw.json" "$load"
done
