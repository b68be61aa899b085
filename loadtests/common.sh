# Shared by the load-test scripts (source it): build the release gateway, start it, and read
# `hey`'s report. hey is a closed-loop client: its percentiles are not corrected for
# coordinated omission.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/modelgate-target}"
# Scripts that load with another client (limit.sh: oha) set NEEDS_HEY=0 before sourcing.
[ "${NEEDS_HEY:-1}" = 0 ] || command -v hey >/dev/null \
  || { echo "needs hey: apt-get install -y hey" >&2; exit 2; }
ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)"
export ORT_DYLIB_PATH
cargo build --release --locked --bin modelgate >&2
bin="$CARGO_TARGET_DIR/release/modelgate"
work="$(mktemp -d)"
gw_pid=""

# Serves CONFIG on a free loopback port (stopping a gateway this script started before);
# sets `base` to its URL.
start_gateway() {
  [ -n "$gw_pid" ] && { kill "$gw_pid" 2>/dev/null; wait "$gw_pid" 2>/dev/null || true; }
  RUST_LOG=warn "$bin" serve --config "$1" --listen 127.0.0.1:0 > "$work/out" 2> "$work/err" &
  gw_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
  base="$(sed -n 's/^modelgate listening on //p' "$work/out")"
  [ -n "$base" ] || { cat "$work/err" >&2; exit 1; }
}

# A one-row `dataframe_split` body of the v1 fixture, in FILE.
write_body() {
  python3 - "$1" <<'PY'
import json, sys
cases = json.load(open("tests/fixtures/transactions_v1_cases.json"))
json.dump({"dataframe_split": {"columns": cases["columns"], "data": cases["data"][:1]}}, open(sys.argv[1], "w"))
PY
}

# The first raw DEMO request of the join fixture (its features are looked up) as a one-row
# `dataframe_split` body, in FILE.
write_raw_body() {
  python3 - "$1" <<'PY'
import json, sys
f = json.load(open("tests/fixtures/transactions_join_cases.json"))
json.dump({"dataframe_split": {"columns": f["columns"], "data": [f["data"][0]]}}, open(sys.argv[1], "w"))
PY
}

# From a hey report: the latency percentile P in ms, requests/s, and the non-2xx status lines.
percentile() { awk -v p="$1%" '$1 == p && $2 == "in" { print $3 * 1000 }' "$2"; }
throughput() { awk '/Requests\/sec/ { printf "%.0f", $2 }' "$1"; }
non_2xx() { grep -c '^\s*\[[45][0-9][0-9]\]' "$1" || true; }
# The markdown cells "req/s | p50 | p90 | p99 | non-2xx" of a hey report.
cells() {
  printf '%s | %s | %s | %s | %s' "$(throughput "$1")" "$(percentile 50 "$1")" \
    "$(percentile 90 "$1")" "$(percentile 99 "$1")" "$(non_2xx "$1")"
}

# Loads endpoint `t` with BODY for DURATION s over CONCURRENCY connections, at RATE req/s per
# connection (LOAD `rate`) or unbounded (`max`); the report goes to $work/h.txt. Prints the
# start of a markdown row: "| load | LABEL | req/s | p50 | p90 | p99 | non-2xx |".
hey_row() {  # $1: label, $2: body file, $3: load (rate|max)
  local limit=()
  [ "$3" = rate ] && limit=(-q "$RATE")
  hey -z "${DURATION}s" -c "$CONCURRENCY" "${limit[@]}" -m POST -T application/json -D "$2" \
    "$base/serving-endpoints/t/invocations" > "$work/h.txt"
  printf '| %s | %s | %s |' "$([ "$3" = rate ] && echo "$((RATE * CONCURRENCY)) req/s" || echo unbounded)" \
    "$1" "$(cells "$work/h.txt")"
}

# Requests answered 200 in the last hey report.
answered() { awk '/\[200\]/ { print $2 }' "$work/h.txt"; }

# The `features:` section of the demo's online tables (the demo versions look features up).
# The demo's online tables (the lines under `tables:`), and the embedded store's section.
DEMO_TABLES="    - {name: transaction_count_ft, path: models/feature_tables/transaction_count_ft.jsonl, primary_keys: [CustomerID], event_timestamp: eventTimestamp}
    - {name: product_3minute_max_price_ft, path: models/feature_tables/product_3minute_max_price_ft.jsonl, primary_keys: [Product], timestamp_key: LookupTimestamp}"
DEMO_FEATURES="features:
  tables:
$DEMO_TABLES"

# The `features:` section of the demo tables in STORE (embedded|redis), Redis on 127.0.0.1:PORT.
store_features() {  # $1: store, $2: redis port
  printf 'features:\n  store: %s\n  redis: {url: "redis://127.0.0.1:%s"}\n  tables:\n%s\n' \
    "$1" "$2" "$DEMO_TABLES"
}
