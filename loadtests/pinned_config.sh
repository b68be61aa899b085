# The gateway config of the pinned load tests (pin.sh, alternate.sh, logging_throughput.sh),
# the load files and start of alternate.sh and logging_throughput.sh, and what they read back
# (steal, dropped log rows); source it.
#
#   pinned_config serving|logged DIR [YAML under inference:] [YAML under inference_log:]
#                 [keys of the served entity]
#
# One endpoint `t` serving demo version MODEL_VERSION (1, the logistic regression, unless set;
# 2 is the gradient-boosted trees) on ONNX Runtime; the served entity gets the last argument's
# keys (say `batching: {max_rows: 32}`); the request carries every feature,
# so its join looks nothing up. `serving`: monitoring off and nothing logged; `logged`: every
# request logged to inference tables under DIR/tables, monitoring on (the demo's defaults).
# The control plane's state file is DIR/state.json (DIR is made).
pinned_config() {
  local kind=$1 dir=$2 inference=${3:-} log=${4:-} entity=${5:-}
  mkdir -p "$dir"
  echo "registry: {path: models, watch: false}"
  echo "features:"
  echo "  tables:"
  echo "    - {name: transaction_count_ft, path: models/feature_tables/transaction_count_ft.jsonl, primary_keys: [CustomerID], event_timestamp: eventTimestamp}"
  echo "    - {name: product_3minute_max_price_ft, path: models/feature_tables/product_3minute_max_price_ft.jsonl, primary_keys: [Product], timestamp_key: LookupTimestamp}"
  echo "control: {state_file: $dir/state.json}"
  [ -z "$inference" ] || printf 'inference:\n  %s\n' "$inference"
  if [ "$kind" = serving ]; then
    echo "monitoring: {enabled: false}"
  else
    printf 'inference_log:\n  location: %s/tables\n' "$dir"
    [ -z "$log" ] || printf '  %s\n' "$log"
  fi
  echo "endpoints:"
  echo "  - name: t"
  echo "    served_entities: [{entity_name: transactions, entity_version: \"${MODEL_VERSION:-1}\", engine: ort${entity:+, $entity}}]"
  [ "$kind" = serving ] || echo "    auto_capture_config: {table_name_prefix: t}"
}

# A temp dir in `work`, removed at exit with the gateway `pid` names (if any) stopped first.
pinned_work() {
  work="$(mktemp -d)" pid=""
  trap '[ -z "$pid" ] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$work"' EXIT
}

# Writes WORK/body.json, ROWS rows of the MODEL_VERSION fixture (1 unless set) as a
# `dataframe_split` body, and WORK/post.lua, a wrk script posting it that prints
# "REQ_PER_S P99_MS" when done.
write_load_files() {  # $1: WORK, $2: ROWS
  python3 - "$1" "${MODEL_VERSION:-1}" "$2" <<'PY'
import json, sys
work = sys.argv[1]
cases = json.load(open(f"tests/fixtures/transactions_v{sys.argv[2]}_cases.json"))
body = json.dumps({"dataframe_split": {"columns": cases["columns"], "data": cases["data"][:int(sys.argv[3])]}})
open(f"{work}/body.json", "w").write(body)
open(f"{work}/post.lua", "w").write(f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {json.dumps(body)}
done = function(summary, latency, requests)
  io.write(string.format("%d %.3f\\n", summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000))
end
""")
PY
}

# Milliseconds of CPUS (a taskset list such as `0` or `0,2-3`, or `all`) that the hypervisor
# has taken since boot: the steal column of /proc/stat. On a shared VM a run that lost tens of
# ms of its cores to steal does not compare with one that lost none; the load tests print the
# difference over each run. 0 where /proc/stat has no steal column; `?` for a list it cannot
# read (taskset takes forms such as `0-7:2` that this does not).
steal_ms() {  # $1: CPUS
  python3 - "$1" <<'PY'
import os, sys
spec = sys.argv[1]
cpus = None
if spec != "all":
    cpus = set()
    try:
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        print("?")
        sys.exit(0)
ticks = 0
try:
    for line in open("/proc/stat"):
        name, *fields = line.split()
        if not name.startswith("cpu") or len(fields) < 8:
            continue
        if (cpus is None and name == "cpu") or (cpus is not None and name[3:].isdigit() and int(name[3:]) in cpus):
            ticks += int(fields[7])
except OSError:
    pass
print(ticks * 1000 // os.sysconf("SC_CLK_TCK"))
PY
}

# Starts BIN serving CONFIG on a free loopback port, pinned to CPUS (taskset's list), its
# stdout and stderr in WORK/out and WORK/err; sets `pid` and `base` (its URL), or prints its
# stderr and exits.
start_pinned() {  # $1: CPUS, $2: BIN, $3: CONFIG, $4: WORK
  taskset -c "$1" "$2" serve --config "$3" --listen 127.0.0.1:0 > "$4/out" 2> "$4/err" &
  pid=$!
  base=""
  for _ in $(seq 300); do
    base="$(sed -n 's/^modelgate listening on //p' "$4/out")"
    [ -n "$base" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$base" ] || { cat "$4/err" >&2; echo "$2 did not start" >&2; exit 1; }
}

# Inference-log rows the gateway at BASE (its URL) has dropped so far: its payload table (one
# row a call), any reason; `?` when its metrics cannot be read. A logged run that dropped rows
# did not log every request.
log_rows_dropped() {  # $1: BASE
  local metrics
  metrics="$(curl -sf -m 5 "$1/metrics")" || { echo '?'; return 0; }
  awk '/^modelgate_inference_log_dropped_rows_total\{/ && /table="payload"/ { n += $2 } END { print n + 0 }' <<< "$metrics"
}
