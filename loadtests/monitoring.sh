#!/usr/bin/env bash
# What monitoring costs a request, in one run on one machine: the release gateway on the demo
# registry (ONNX Runtime, version 1 with its baseline, raw DEMO requests joined from the
# embedded store) with monitoring off, then on (drift profiles of the 6 model inputs and 2
# outputs in 5m/30m/1h windows, every scored row held for its label), under the same `hey`
# load (Debian package `hey`): a fixed rate, then unbounded. After the monitored runs the
# report's since-load count shows every scored row was profiled.
#
#   loadtests/monitoring.sh            # DURATION=10 CONCURRENCY=4 RATE=250
#
# hey is a closed-loop client: its percentiles are not corrected for coordinated omission.
set -euo pipefail
DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-4}"
RATE="${RATE:-250}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trap 'kill $gw_pid 2>/dev/null || true; rm -rf "$work"' EXIT

config() {  # $1: true | false
  cat <<YAML
$DEMO_FEATURES
registry: {path: models, watch: false}
control: {state_file: $work/state.json}
monitoring: {enabled: $1}
endpoints:
  - name: t
    served_entities: [{name: champion, entity_name: transactions, entity_version: "1", engine: ort}]
YAML
}
config false > "$work/off.yaml"
config true > "$work/on.yaml"
write_raw_body "$work/raw.json"

# Rows the champion's since-load profile counted (its Amount column).
profiled_rows() {
  curl -s "$base/api/2.0/serving-endpoints/t/monitoring" | python3 -c '
import json, sys
r = json.load(sys.stdin)["served_entities"][0]
total = [w for w in r["windows"] if w["window"] == "total"][0]
print([c for c in total["columns"] if c["name"] == "Amount"][0]["count"])'
}

run() { hey_row "$1" "$work/raw.json" "$2"; }  # $1: label, $2: load (rate|max)

echo "hey -z ${DURATION}s -c $CONCURRENCY, one raw DEMO row per request (embedded feature join); $(nproc) cores"
echo
echo "| load | monitoring | req/s | p50 ms | p90 ms | p99 ms | non-2xx status lines | rows profiled / answered |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for load in rate max; do
  start_gateway "$work/off.yaml"
  run "off" "$load"; echo " - |"
  start_gateway "$work/on.yaml"
  run "on" "$load"; echo " $(profiled_rows) / $(answered) |"
done
