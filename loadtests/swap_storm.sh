#!/usr/bin/env bash
# Latency during a swap storm against steady state, in one run on one machine.
#
# Runs the release gateway on a copy of the demo registry (versions 1 and 2, ONNX Runtime),
# then drives it with `hey` (Debian package `hey`) twice for the same time at the same
# concurrency: once steady, once while `champion` flips between the two versions every
# FLIP_MS milliseconds (each flip is a full load, validation, warm-up and swap). Prints a
# markdown table of the latency percentiles hey reports and the number of swaps made.
#
#   loadtests/swap_storm.sh            # DURATION=15 CONCURRENCY=8 FLIP_MS=100
#
# hey is a closed-loop client: its percentiles are not corrected for coordinated omission.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION="${DURATION:-15}"
CONCURRENCY="${CONCURRENCY:-8}"
FLIP_MS="${FLIP_MS:-100}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/modelgate-target}"
command -v hey >/dev/null || { echo "needs hey: apt-get install -y hey" >&2; exit 2; }
ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)"
export ORT_DYLIB_PATH
cargo build --release --locked --bin modelgate >&2

work="$(mktemp -d)"
trap 'kill "$gw_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/registry/transactions"
cp -r models/transactions/1 models/transactions/2 "$work/registry/transactions/"
echo "champion: 1" > "$work/registry/transactions/aliases.yaml"
cat > "$work/config.yaml" <<YAML
registry:
  path: $work/registry
  settle_ms: 20
inference:
  warmup_runs: 1
endpoints:
  - name: transactions
    served_entities: [{entity_name: transactions, entity_version: champion}]
YAML
RUST_LOG=warn "$CARGO_TARGET_DIR/release/modelgate" serve --config "$work/config.yaml" --listen 127.0.0.1:0 > "$work/out" 2> "$work/err" &
gw_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
base="$(sed -n 's/^modelgate listening on //p' "$work/out")"
url="$base/serving-endpoints/transactions/invocations"
python3 - "$work/body.json" <<'PY'
import json, sys
cases = json.load(open("tests/fixtures/transactions_v1_cases.json"))
json.dump({"dataframe_split": {"columns": cases["columns"], "data": cases["data"][:1]}}, open(sys.argv[1], "w"))
PY

run_hey() { hey -z "${DURATION}s" -c "$CONCURRENCY" -m POST -T application/json -D "$work/body.json" "$url"; }
percentile() { awk -v p="$1%" '$1 == p && $2 == "in" { print $3 * 1000 }' "$2"; }
swaps() { curl -s "$base/metrics" | awk '/^modelgate_model_swaps_total\{endpoint="transactions",outcome="success"\}/ { print $2 }'; }

run_hey > "$work/steady.txt"
before="$(swaps)"
(
  v=2
  end=$((SECONDS + DURATION))
  while [ "$SECONDS" -lt "$end" ]; do
    printf 'champion: %s\n' "$v" > "$work/registry/transactions/.aliases.tmp"
    mv "$work/registry/transactions/.aliases.tmp" "$work/registry/transactions/aliases.yaml"
    v=$((3 - v))
    sleep "$(awk -v ms="$FLIP_MS" 'BEGIN { print ms / 1000 }')"
  done
) &
flipper=$!
run_hey > "$work/storm.txt"
wait "$flipper"
after="$(swaps)"

row() {
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" \
    "$(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$2")" \
    "$(percentile 50 "$2")" "$(percentile 90 "$2")" "$(percentile 99 "$2")" \
    "$(grep -c '^\s*\[[45][0-9][0-9]\]' "$2" || true)"
}
echo "hey -z ${DURATION}s -c $CONCURRENCY, one row per request; alias flipped every ${FLIP_MS} ms in the storm; $(nproc) cores"
echo
echo "| phase | req/s | p50 ms | p90 ms | p99 ms | non-2xx status lines |"
echo "| --- | --- | --- | --- | --- | --- |"
row steady "$work/steady.txt"
row "swap storm ($((${after%.*} - ${before%.*})) swaps)" "$work/storm.txt"
echo
echo "hey status code distribution, storm:"
sed -n '/Status code distribution/,/^$/p' "$work/storm.txt"
