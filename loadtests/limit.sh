#!/usr/bin/env bash
# The limit, measured beside the gateway (issue 8): in one session on one machine,
#   (a) a bare actix-web server (loadtests/bare) answering every POST with a fixed small JSON
#       body: what HTTP on this machine, with this client, can do at most;
#   (b) raw in-process inference of the demo model, and the gateway's request path without
#       HTTP (the criterion bench benches/request_path.rs, one row, ONNX Runtime);
#   (c) the release gateway's full path on the demo registry (version 1, ONNX Runtime): raw
#       DEMO rows joined from the embedded feature store, every request logged to inference
#       tables (auto_capture_config, in a temp dir), monitoring on (its default);
#   (d) the same with the Redis online store (a redis-server on a loopback port, the demo
#       tables loaded into it by `modelgate features load`).
# Each HTTP target gets the same request (the first row of
# tests/fixtures/transactions_join_cases.json as a dataframe_split body) from `oha`, an
# open-loop-capable load generator: first unbounded over CONCURRENCY connections (its maximum
# throughput), then at a fixed rate of half that maximum with oha's --latency-correction (so
# the percentiles count the time a request waited to be sent: no coordinated omission).
# Prints a markdown section (and writes it to --out FILE) with the gateway's throughput as a
# share of the bare server's, its p99 at half its maximum, and its overhead (that p99 minus
# criterion's raw_inference time), against the targets: >= 60 % and < 1 ms.
#
#   loadtests/limit.sh [--out FILE]   # DURATION=10 CONCURRENCY=16 WARMUP=1 BENCH_TIME=3
#   loadtests/limit.sh --pin [ARGS]   # one core: runs loadtests/pin.sh (see its --help)
#
# Needs oha (installed with `cargo install --locked oha` when it is missing), python3, curl,
# and what loadtests/common.sh needs. Everything listens on 127.0.0.1 only; every process this
# script starts is stopped when it exits. The client shares the machine with the servers.
set -euo pipefail
DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-16}"
WARMUP="${WARMUP:-1}"
BENCH_TIME="${BENCH_TIME:-3}"
OHA_VERSION="${OHA_VERSION:-1.16.0}"  # the version installed when oha is missing
BUILD_TIMEOUT="${BUILD_TIMEOUT:-3600}"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
out=""
[ "${1:-}" != --pin ] || { shift; exec "$(dirname "${BASH_SOURCE[0]}")/pin.sh" "$@"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "--out needs a file" >&2; exit 2; }; out="$(realpath -m "$2")"; shift 2 ;;
    --out=*) out="$(realpath -m "${1#--out=}")"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for n in DURATION CONCURRENCY WARMUP BENCH_TIME; do
  [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || { echo "$n must be a positive whole number" >&2; exit 2; }
done
started_at=$SECONDS

# Every process this script starts is stopped on the way out, whatever the way.
child="" bare_pid="" redis_pid="" gw_pid="" work=""
cleanup() {
  local p
  for p in $child $gw_pid $bare_pid $redis_pid; do kill "$p" 2>/dev/null || true; done
  for p in $child $gw_pid $bare_pid $redis_pid; do wait "$p" 2>/dev/null || true; done
  [ -z "$work" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Runs a command for at most SECS seconds. It runs in the background and is waited for, so a
# signal to this script reaches cleanup at once (timeout puts the command in a process group of
# its own, which a terminal's Ctrl-C does not reach); cleanup stops it.
bounded() {  # $1: seconds, rest: command
  local secs=$1 rc=0
  shift
  timeout "$secs" "$@" &
  child=$!
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

# oha: on PATH, else in cargo's bin folder, else installed there (once; about 9 minutes). The
# install builds in its own temp dir, not in the shared CARGO_TARGET_DIR.
OHA="$(command -v oha || true)"
[ -n "$OHA" ] || [ ! -x "$HOME/.cargo/bin/oha" ] || OHA="$HOME/.cargo/bin/oha"
if [ -z "$OHA" ]; then
  echo "limit.sh: oha is missing: cargo install --locked oha --version $OHA_VERSION (about 9 minutes)" >&2
  bounded "$BUILD_TIMEOUT" env -u CARGO_TARGET_DIR cargo install --locked oha --version "$OHA_VERSION" >&2
  OHA="$HOME/.cargo/bin/oha"
fi
"$OHA" --help | grep -q -- '--latency-correction' || { echo "$OHA has no --latency-correction: needs a newer oha (cargo install --locked oha)" >&2; exit 2; }
oha_version="$("$OHA" --version | awk '{ print $2 }')"
command -v curl >/dev/null || { echo "needs curl" >&2; exit 2; }

# The release gateway (built by common.sh), ORT_DYLIB_PATH, $work, start_gateway and the demo
# feature tables.
NEEDS_HEY=0
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bounded "$BUILD_TIMEOUT" cargo build --release --locked -p modelgate-bare >&2
bare_bin="$CARGO_TARGET_DIR/release/modelgate-bare"

# --- the request -------------------------------------------------------------------------------
write_raw_body "$work/raw.json"

# --- (b) in-process: criterion -----------------------------------------------------------------
bench_filter='^rows_1/(raw_inference|request_path|request_path_monitored)/ort$'
bench_cmd=(cargo bench --locked --bench request_path -- --warm-up-time 1 --measurement-time "$BENCH_TIME"
  --output-format bencher "$bench_filter")
echo "limit.sh: building and running the request_path bench" >&2
bounded "$BUILD_TIMEOUT" cargo bench --locked --bench request_path --no-run >&2
built_at=$SECONDS
bounded 600 "${bench_cmd[@]}" > "$work/bench.txt"
grep -q 'rows_1/raw_inference/ort ' "$work/bench.txt" || {
  cat "$work/bench.txt" >&2; echo "limit.sh: no raw_inference/ort row (does ONNX Runtime load?)" >&2; exit 1
}

# --- HTTP targets -------------------------------------------------------------------------------
: > "$work/commands.txt"
# Runs oha with ARGS against URL; the JSON report goes to FILE (and the command to the list).
oha_json() {  # $1: file, $2: url, rest: oha args
  local file=$1 url=$2; shift 2
  local cmd=("$OHA" "$@" -w -t 10s --no-tui --output-format json
    -m POST -T application/json -D "$work/raw.json" "$url")
  echo "oha ${cmd[*]:1}" >> "$work/commands.txt"
  bounded $((DURATION + WARMUP + 60)) "${cmd[@]}" > "$file"
}
# Requests answered 2xx per second in an oha JSON report.
ok_rate() {
  python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
ok = sum(n for code, n in d["statusCodeDistribution"].items() if code.startswith("2"))
print(int(ok / d["summary"]["total"]))' "$1"
}

# One request first (it must be answered 200), a warm-up, the unbounded run, then the run at
# half the unbounded run's answered rate. $1: target key, $2: URL.
measure() {
  local key=$1 url=$2 status
  status="$(curl -s -m 10 -o "$work/$key-answer.json" -w '%{http_code}' -H 'content-type: application/json' \
    --data-binary "@$work/raw.json" "$url")" || true
  [ "$status" = 200 ] || { echo "limit.sh: $key answered $status: $(head -c 500 "$work/$key-answer.json" 2>/dev/null)" >&2; exit 1; }
  echo "limit.sh: $key: warm-up ${WARMUP}s, unbounded ${DURATION}s" >&2
  bounded $((WARMUP + 60)) "$OHA" -z "${WARMUP}s" -c "$CONCURRENCY" --no-tui --output-format quiet \
    -m POST -T application/json -D "$work/raw.json" "$url" > /dev/null
  oha_json "$work/$key-max.json" "$url" -z "${DURATION}s" -c "$CONCURRENCY"
  local max half
  max="$(ok_rate "$work/$key-max.json")"
  half=$((max / 2))
  [ "$half" -ge 1 ] || { echo "limit.sh: $key answered nothing unbounded" >&2; exit 1; }
  # A gateway logs every request: the unbounded run leaves a backlog in the inference-log
  # queue. The fixed-rate run measures the steady state, so it starts once that has drained.
  if [ "$key" != bare ]; then
    local base=${url%%/serving-endpoints*} waited=0 queued
    while queued="$(curl -s -m 5 "$base/metrics" | awk '/^modelgate_inference_log_queue_bytes / { print $2 }')" \
      && [ -n "$queued" ] && [ "$queued" != 0 ] && [ "$waited" -lt 120 ]; do
      sleep 1; waited=$((waited + 1))
    done
    echo "limit.sh: $key: the inference-log queue drained in ${waited}s" >&2
    echo "$waited" > "$work/$key-drain.txt"
  fi
  echo "limit.sh: $key: $max req/s unbounded; ${DURATION}s at $half req/s" >&2
  oha_json "$work/$key-half.json" "$url" -z "${DURATION}s" -c "$CONCURRENCY" -q "$half" --latency-correction
}

# Stops the gateway with SIGTERM (it drains and commits its inference tables), then SIGKILL
# after 60 s.
stop_gateway() {
  [ -n "$gw_pid" ] || return 0
  kill -TERM "$gw_pid" 2>/dev/null || true
  for _ in $(seq 600); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$gw_pid" 2>/dev/null || true
  wait "$gw_pid" 2>/dev/null || true
  gw_pid=""
}

# (a) the bare server
"$bare_bin" --listen 127.0.0.1:0 > "$work/bare.out" 2> "$work/bare.err" &
bare_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/bare.out" 2>/dev/null && break; sleep 0.1; done
bare_base="$(sed -n 's/^bare listening on //p' "$work/bare.out")"
[ -n "$bare_base" ] || { cat "$work/bare.err" >&2; exit 1; }
measure bare "$bare_base/serving-endpoints/t/invocations"
kill "$bare_pid"; wait "$bare_pid" 2>/dev/null || true; bare_pid=""

# (c) and (d): the gateway, embedded then Redis store.
REDIS="$(scripts/redis-server.sh)"
redis_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
config() {  # $1: store (embedded|redis)
  cat <<YAML
$(store_features "$1" "$redis_port")
registry: {path: models, watch: false}
control: {state_file: $work/state-$1.json}
inference_log: {location: $work/tables-$1}
endpoints:
  - name: t
    served_entities: [{entity_name: transactions, entity_version: "1", engine: ort}]
    auto_capture_config: {table_name_prefix: t}
YAML
}
config embedded > "$work/embedded.yaml"
config redis > "$work/redis.yaml"

start_gateway "$work/embedded.yaml"
measure embedded "$base/serving-endpoints/t/invocations"
stop_gateway

"$REDIS" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break; sleep 0.1; done
bounded 120 "$bin" features load --config "$work/redis.yaml" >&2
start_gateway "$work/redis.yaml"
measure redis "$base/serving-endpoints/t/invocations"
stop_gateway
kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true; redis_pid=""

# --- the section --------------------------------------------------------------------------------
{
  echo "export CARGO_TARGET_DIR=$CARGO_TARGET_DIR ORT_DYLIB_PATH=\$(scripts/fetch-onnxruntime.sh)"
  echo "cargo build --release --locked --bin modelgate && cargo build --release --locked -p modelgate-bare"
  echo "${bench_cmd[*]:0:${#bench_cmd[@]}-1} '$bench_filter'"
  echo "$bare_bin --listen 127.0.0.1:0"
  echo "RUST_LOG=warn $bin serve --config \$WORK/embedded.yaml --listen 127.0.0.1:0"
  echo "$REDIS --port $redis_port --bind 127.0.0.1 --save '' --appendonly no"
  echo "$bin features load --config \$WORK/redis.yaml"
  echo "RUST_LOG=warn $bin serve --config \$WORK/redis.yaml --listen 127.0.0.1:0"
  cat "$work/commands.txt"
} | sed "s#$work#\$WORK#g; s#$CARGO_TARGET_DIR/#\$CARGO_TARGET_DIR/#g; s#$HOME/#~/#g" > "$work/all-commands.txt"

section="$(python3 - "$work" "$oha_version" "$DURATION" "$CONCURRENCY" "$WARMUP" "$BENCH_TIME" \
  "$((SECONDS - started_at))" "$((built_at - started_at))" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  "$(git status --porcelain 2>/dev/null | grep -q . && echo ' (with local changes)' || true)" <<'PY'
import json, os, platform, re, sys, time

work, oha, duration, conc, warmup, bench_time, took, building, rev, dirty = sys.argv[1:]

def report(key, load):
    d = json.load(open(f"{work}/{key}-{load}.json"))
    codes = d["statusCodeDistribution"]
    ok = sum(n for c, n in codes.items() if c.startswith("2"))
    bad = sum(n for c, n in codes.items() if not c.startswith("2"))
    errors = sum(d.get("errorDistribution", {}).values())
    pct = d["latencyPercentiles"]
    ms = lambda p: (pct.get(p) or 0.0) * 1000
    return {"rps": ok / d["summary"]["total"], "p50": ms("p50"), "p99": ms("p99"),
            "p999": ms("p99.9"), "other": bad + errors, "bytes": d["summary"].get("sizePerRequest")}

bench = {}
for line in open(f"{work}/bench.txt"):
    m = re.match(r"test rows_1/(\S+)/ort \.\.\. bench:\s+([\d,]+) ns/iter", line)
    if m:
        bench[m.group(1)] = int(m.group(2).replace(",", "")) / 1000  # µs
raw = bench["raw_inference"]

cpu = "?"
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    pass

targets = [
    ("bare", "bare actix-web (fixed JSON answer)"),
    ("embedded", "gateway, embedded store"),
    ("redis", "gateway, Redis store"),
]
r = {k: {"max": report(k, "max"), "half": report(k, "half")} for k, _ in targets}
bare_max = r["bare"]["max"]["rps"]

def verdict(ok):
    return "met" if ok else "**missed**"

o = []
o.append("## The limit, measured beside the gateway")
o.append("")
o.append(f"One run of `loadtests/limit.sh` at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
         f"(commit {rev}{dirty}) on {os.cpu_count()} cores ({cpu}, Linux {platform.release()}); "
         f"it took {took} s, {building} s of which building. The load generator is oha {oha}, on the same machine over loopback "
         f"(it takes its share of the cores); {conc} connections, one raw DEMO row per request "
         f"(the first row of `tests/fixtures/transactions_join_cases.json`), the same body to "
         f"every target. The gateway serves demo version 1 on ONNX Runtime, joins the row's "
         f"features from the store, logs every request to inference tables and monitors "
         f"(drift profiles, label wait) as by default.")
o.append("")
o.append(f"Each target: {warmup} s of warm-up, {duration} s unbounded (its maximum), then {duration} s "
         f"at half that maximum with `--latency-correction` (percentiles from each request's "
         f"scheduled send time), on the same process once the unbounded run's inference-log "
         f"backlog has been committed. Requests "
         f"answered other than 2xx, or not at all, are counted apart.")
o.append("")
o.append("| target | max req/s (unbounded) | share of bare | rate at half max | answered req/s | p50 ms | p99 ms | p99.9 ms | non-2xx + errors (max / half) | answer bytes |")
o.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for key, label in targets:
    m, h = r[key]["max"], r[key]["half"]
    o.append(f"| {label} | {m['rps']:.0f} | {100 * m['rps'] / bare_max:.0f} % | {int(m['rps']) // 2} | "
             f"{h['rps']:.0f} | {h['p50']:.3f} | {h['p99']:.3f} | {h['p999']:.3f} | {m['other']} / {h['other']} | {m['bytes']} |")
o.append("")
o.append(f"In process, one row (criterion, `benches/request_path.rs`, median of {bench_time} s after 1 s warm-up):")
o.append("")
o.append("| bench row (ONNX Runtime, version 1) | µs |")
o.append("| --- | ---: |")
for row, what in [("raw_inference", "model compute on prebuilt tensors"),
                  ("request_path", "decode, bind, infer, encode"),
                  ("request_path_monitored", "the same with monitoring")]:
    if row in bench:
        o.append(f"| `rows_1/{row}/ort`: {what} | {bench[row]:.1f} |")
o.append("")
o.append("Against the targets (overhead = the gateway's p99 at half its maximum minus `raw_inference`):")
o.append("")
o.append("| measure | embedded store | Redis store | target |")
o.append("| --- | ---: | ---: | --- |")
share = {k: 100 * r[k]["max"]["rps"] / bare_max for k in ("embedded", "redis")}
p99 = {k: r[k]["half"]["p99"] for k in ("embedded", "redis")}
o.append(f"| throughput, share of bare | {share['embedded']:.0f} % ({verdict(share['embedded'] >= 60)}) | "
         f"{share['redis']:.0f} % ({verdict(share['redis'] >= 60)}) | >= 60 % |")
o.append(f"| p99 at half max | {p99['embedded']:.3f} ms ({verdict(p99['embedded'] < 1)}) | "
         f"{p99['redis']:.3f} ms ({verdict(p99['redis'] < 1)}) | < 1 ms |")
o.append(f"| overhead: p99 at half max - raw_inference ({raw:.1f} µs) | {p99['embedded'] - raw / 1000:.3f} ms | "
         f"{p99['redis'] - raw / 1000:.3f} ms | |")
o.append(f"| for scale: bare p99 at half its max | {r['bare']['half']['p99']:.3f} ms | | |")
o.append("")
o.append("Commands, in the order run (`$WORK` is the run's temp dir; the ports and rates are this run's; "
         "`embedded.yaml` is below, `redis.yaml` differs in `store: redis` and its own dirs):")
o.append("")
o.append("```sh")
o.extend(l.rstrip("\n") for l in open(f"{work}/all-commands.txt"))
o.append("```")
o.append("")
o.append("```yaml")
o.extend(l.rstrip("\n").replace(work, "$WORK") for l in open(f"{work}/embedded.yaml"))
o.append("```")
print("\n".join(o))
PY
)"
echo "$section"
[ -z "$out" ] || { mkdir -p "$(dirname "$out")"; echo "$section" > "$out"; }
echo "limit.sh: done in $((SECONDS - started_at)) s" >&2
