#!/usr/bin/env bash
# What an A/B split and a shadow cost the caller, in one run on one machine.
#
# Runs the release gateway on the demo registry (ONNX Runtime) with three endpoints that all
# answer with version 1: `plain` (version 1 alone), `ab` (90/10 between version 1 and 2,
# random per request) and `shadow` (version 1 answers, every request is copied to version 2).
# Drives each with `hey` (Debian package `hey`) for the same time at the same concurrency, first
# at a fixed rate (RATE requests/s per client: below saturation, where a shadow should cost the
# caller nothing), then unbounded (saturation: a shadow competes for the same cores). Prints a
# markdown table of throughput and latency percentiles, and the shadow copies scored and dropped.
#
#   loadtests/ab_shadow.sh            # DURATION=10 CONCURRENCY=4 RATE=250
#
# hey is a closed-loop client: its percentiles are not corrected for coordinated omission.
set -euo pipefail
DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-4}"
RATE="${RATE:-250}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trap 'kill "$gw_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/config.yaml" <<YAML
$DEMO_FEATURES
registry:
  path: models
  watch: false
control:
  state_file: $work/state.json
endpoints:
  - name: plain
    served_entities: [{name: v1, entity_name: transactions, entity_version: "1"}]
  - name: ab
    served_entities:
      - {name: v1, entity_name: transactions, entity_version: "1"}
      - {name: v2, entity_name: transactions, entity_version: "2"}
    traffic_config:
      routes:
        - {served_entity_name: v1, traffic_percentage: 90}
        - {served_entity_name: v2, traffic_percentage: 10}
  - name: shadow
    served_entities:
      - {name: v1, entity_name: transactions, entity_version: "1"}
      - {name: v2, entity_name: transactions, entity_version: "2"}
    traffic_config:
      routes:
        - {served_entity_name: v1, traffic_percentage: 100}
        - {served_entity_name: v2, shadow: true}
YAML
start_gateway "$work/config.yaml"
write_body "$work/body.json"

shadow_copies() {
  curl -s "$base/metrics" | awk -v o="$1" '$1 == "modelgate_shadow_requests_total{endpoint=\"shadow\",outcome=\"" o "\",served_entity=\"v2\"}" { print $2 }'
}
row() { printf '| %s | %s | %s |\n' "$1" "$2" "$(cells "$3")"; }

echo "hey -z ${DURATION}s -c $CONCURRENCY, one row per request; $(nproc) cores"
echo
echo "| load | endpoint | req/s | p50 ms | p90 ms | p99 ms | non-2xx status lines |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for load in "rate" "max"; do
  for ep in plain ab shadow; do
    limit=()
    [ "$load" = rate ] && limit=(-q "$RATE")
    hey -z "${DURATION}s" -c "$CONCURRENCY" "${limit[@]}" -m POST -T application/json -D "$work/body.json" \
      "$base/serving-endpoints/$ep/invocations" > "$work/$load-$ep.txt"
    label="$([ "$load" = rate ] && echo "$((RATE * CONCURRENCY)) req/s" || echo "unbounded")"
    row "$label" "$ep" "$work/$load-$ep.txt"
  done
done
sleep 1
echo
echo "shadow copies: $(shadow_copies success) scored, $(shadow_copies dropped) dropped (queue full), $(shadow_copies error) failed"
