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
DURATION="${DURATION:-15}"
CONCURRENCY="${CONCURRENCY:-8}"
FLIP_MS="${FLIP_MS:-100}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trap 'kill "$gw_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/registry/transactions"
cp -r models/transactions/1 models/transactions/2 "$work/registry/transactions/"
echo "champion: 1" > "$work/registry/transactions/aliases.yaml"
cat > "$work/config.yaml" <<YAML
$DEMO_FEATURES
registry:
  path: $work/registry
  settle_ms: 20
inference:
  warmup_runs: 1
endpoints:
  - name: transactions
    served_entities: [{entity_name: transactions, entity_version: champion}]
YAML
start_gateway "$work/config.yaml"
url="$base/serving-endpoints/transactions/invocations"
write_body "$work/body.json"

run_hey() { hey -z "${DURATION}s" -c "$CONCURRENCY" -m POST -T application/json -D "$work/body.json" "$url"; }
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

row() { printf '| %s | %s |\n' "$1" "$(cells "$2")"; }
echo "hey -z ${DURATION}s -c $CONCURRENCY, one row per request; alias flipped every ${FLIP_MS} ms in the storm; $(nproc) cores"
echo
echo "| phase | req/s | p50 ms | p90 ms | p99 ms | non-2xx status lines |"
echo "| --- | --- | --- | --- | --- | --- |"
row steady "$work/steady.txt"
row "swap storm ($((${after%.*} - ${before%.*})) swaps)" "$work/storm.txt"
echo
echo "hey status code distribution, storm:"
sed -n '/Status code distribution/,/^$/p' "$work/storm.txt"
