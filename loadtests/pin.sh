#!/usr/bin/env bash
# The full path beside the limit of one core (issue 17): in one run, with the server pinned to
# one CPU and the load generator to another,
#   bare     the bare actix-web server (loadtests/bare), a fixed small JSON answer to every POST;
#   infer    the same server running demo version 1 for every request, on the gateway's own
#            engine (ONNX Runtime) and ROWS copies of the model's example row
#            (`modelgate-bare --infer models/transactions/1 --infer-rows ROWS`): the
#            limit of HTTP and inference on the core, with nothing decoded, routed or encoded;
#   serving  the release gateway serving demo version 1 on ONNX Runtime, nothing logged,
#            monitoring off (the request carries every feature: its join looks nothing up);
#   logged   the same endpoint with every request logged to inference tables
#            (auto_capture_config, in a temp dir) and monitoring on (the demo's defaults).
# Each target, at each connection count in CONNECTIONS: a warm-up, then wrk closed loop for
# DURATION s (its maximum), then oha open loop at half that maximum with --latency-correction
# (percentiles from each request's scheduled send time: no coordinated omission). The gateway
# targets start the open-loop run once the inference-log queue has drained.
# Prints a markdown section (and writes it to --out FILE) with the ratios the issue sets:
# serving >= 50 % of bare's req/s with p99 <= 2x bare's; logged >= 85 % of serving's req/s
# with p99 <= 1.5x serving's, closed loop and open loop. Beside them: the limit's req/s as a
# share of bare's (infer / bare), and serving's as a share of the limit's (serving / infer).
# Each measured run also gets the time the hypervisor took from the server's and the client's
# CPUs meanwhile (steal, /proc/stat); the section says which runs lost more than 1 % of their
# time to it.
#
#   loadtests/pin.sh [--out FILE] [--unpinned]
#   DURATION=15 WARMUP=3 CONNECTIONS="8 32" ROWS=1 SERVER_CPUS=0 CLIENT_CPUS=1
#   GATEWAY_BIN=... BARE_BIN=... (prebuilt binaries; else built here in release)
#   LOG_YAML='writer_nice: 19' (a line under the logged target's inference_log:)
#
# --unpinned runs the same without taskset (server and client share every core). Needs wrk
# (apt-get install -y wrk), oha (cargo install --locked oha --version 1.16.0), taskset,
# python3 and curl. Everything listens on 127.0.0.1; every process started here is stopped
# when the script exits.
set -euo pipefail
DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-3}"
CONNECTIONS="${CONNECTIONS:-8 32}"
ROWS="${ROWS:-1}"
SERVER_CPUS="${SERVER_CPUS:-0}"
CLIENT_CPUS="${CLIENT_CPUS:-1}"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
out="" pinned=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "--out needs a file" >&2; exit 2; }; out="$(realpath -m "$2")"; shift 2 ;;
    --out=*) out="$(realpath -m "${1#--out=}")"; shift ;;
    --unpinned) pinned=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for n in DURATION WARMUP ROWS; do
  [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || { echo "$n must be a positive whole number" >&2; exit 2; }
done
for c in $CONNECTIONS; do
  [[ "$c" =~ ^[1-9][0-9]*$ ]] || { echo "CONNECTIONS must be positive whole numbers" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "needs wrk: apt-get install -y wrk" >&2; exit 2; }
OHA="$(command -v oha || echo "$HOME/.cargo/bin/oha")"
[ -x "$OHA" ] || { echo "needs oha: cargo install --locked oha --version 1.16.0" >&2; exit 2; }
command -v taskset >/dev/null || { echo "needs taskset (util-linux)" >&2; exit 2; }
started_at=$SECONDS

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/modelgate-target}"
ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)"
export ORT_DYLIB_PATH RUST_LOG=warn
PREBUILT="${GATEWAY_BIN:+1}"   # a prebuilt gateway is named in the table, not this commit
if [ -z "${GATEWAY_BIN:-}" ]; then
  cargo build --release --locked --bin modelgate >&2
  GATEWAY_BIN="$CARGO_TARGET_DIR/release/modelgate"
fi
if [ -z "${BARE_BIN:-}" ]; then
  cargo build --release --locked -p modelgate-bare >&2
  BARE_BIN="$CARGO_TARGET_DIR/release/modelgate-bare"
fi

server=() client=() steal_cpus=(all all)
if [ "$pinned" = 1 ]; then
  server=(taskset -c "$SERVER_CPUS")
  client=(taskset -c "$CLIENT_CPUS")
  steal_cpus=("$SERVER_CPUS" "$CLIENT_CPUS")
fi
# shellcheck source=loadtests/pinned_config.sh
source loadtests/pinned_config.sh
# "SERVER_MS CLIENT_MS": steal so far on the server's and the client's CPUs.
steal_now() { echo "$(steal_ms "${steal_cpus[0]}") $(steal_ms "${steal_cpus[1]}")"; }

work="$(mktemp -d)" pid=""
cleanup() {
  [ -z "$pid" ] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The request: the first ROWS rows of the v1 fixture (every feature given) as dataframe_split.
python3 - "$work/body.json" "$ROWS" <<'PY'
import json, sys
cases = json.load(open("tests/fixtures/transactions_v1_cases.json"))
data = [cases["data"][i % len(cases["data"])] for i in range(int(sys.argv[2]))]
json.dump({"dataframe_split": {"columns": cases["columns"], "data": data}}, open(sys.argv[1], "w"))
PY
# wrk posts the body and prints its summary as one JSON line.
python3 - "$work/body.json" "$work/post.lua" <<'PY'
import json, sys
body = open(sys.argv[1]).read()
open(sys.argv[2], "w").write(f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {json.dumps(body)}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{{"requests": %d, "duration_us": %d, "non2xx": %d, "errors": %d, "p50_us": %d, "p99_us": %d, "p999_us": %d}}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
""")
PY

# Starts SERVER ARGS..., whose first stdout line says "... listening on URL"; sets `base`.
start() {  # $1: prefix of the line, rest: command
  local prefix=$1; shift
  "${server[@]}" "$@" > "$work/out" 2> "$work/err" &
  pid=$!
  base=""
  for _ in $(seq 300); do
    base="$(sed -n "s/^$prefix listening on //p" "$work/out")"
    [ -n "$base" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$base" ] || { cat "$work/err" >&2; echo "pin.sh: $* did not start" >&2; exit 1; }
}
# SIGTERM (a gateway drains and commits its tables), SIGKILL after 60 s.
stop() {
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}
# The logged target's dropped inference-log rows so far (log_rows_dropped); `-` for the others.
dropped_now() {  # $1: target key
  if [ "$1" = logged ]; then log_rows_dropped "$base"; else echo -; fi
}
# Waits (at most 120 s) until a gateway's inference-log queue is empty.
drained() {
  local queued waited=0
  while queued="$(curl -s -m 5 "$base/metrics" | awk '/^modelgate_inference_log_queue_bytes / { print $2 }')" \
    && [ -n "$queued" ] && [ "$queued" != 0 ] && [ "$waited" -lt 1200 ]; do
    sleep 0.1; waited=$((waited + 1))
  done
}

: > "$work/commands.txt"
gateway() { [ "$1" = serving ] || [ "$1" = logged ]; }
# Closed loop then open loop at half its rate, at each connection count; reports in $work.
measure() {  # $1: target key
  local key=$1 url="$base/serving-endpoints/t/invocations" status c
  status="$(curl -s -m 10 -o "$work/$key-answer.json" -w '%{http_code}' -H 'content-type: application/json' \
    --data-binary "@$work/body.json" "$url")" || true
  [ "$status" = 200 ] || { echo "pin.sh: $key answered $status: $(head -c 500 "$work/$key-answer.json")" >&2; exit 1; }
  for c in $CONNECTIONS; do
    echo "pin.sh: $key c=$c: warm-up ${WARMUP}s, closed loop ${DURATION}s" >&2
    "${client[@]}" wrk -t1 -c"$c" -d"${WARMUP}s" -s "$work/post.lua" "$url" > /dev/null
    gateway "$key" && drained
    local cmd=(wrk -t1 -c"$c" -d"${DURATION}s" --timeout 10s -s "$work/post.lua" "$url")
    echo "${client[*]} ${cmd[*]}" >> "$work/commands.txt"
    local before dropped
    before="$(steal_now)" dropped="$(dropped_now "$key")"
    "${client[@]}" "${cmd[@]}" | tail -n 1 > "$work/$key-closed-$c.json"
    echo "$before $(steal_now)" > "$work/$key-closed-$c.steal"
    # Rows the log drops now or while it drains what this run queued (after the drain's 120 s
    # they are not counted).
    gateway "$key" && drained
    echo "$dropped $(dropped_now "$key")" > "$work/$key-closed-$c.dropped"
    local rate
    rate="$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(max(1, int((d["requests"] - d["non2xx"]) / (d["duration_us"] / 1e6) / 2)))' "$work/$key-closed-$c.json")"
    echo "pin.sh: $key c=$c: open loop ${DURATION}s at $rate req/s" >&2
    cmd=("$OHA" -z "${DURATION}s" -c "$c" -q "$rate" --latency-correction -w -t 10s --no-tui
      --output-format json -m POST -T application/json -D "$work/body.json" "$url")
    echo "${client[*]} oha ${cmd[*]:1}" >> "$work/commands.txt"
    before="$(steal_now)" dropped="$(dropped_now "$key")"
    "${client[@]}" "${cmd[@]}" > "$work/$key-open-$c.json"
    echo "$before $(steal_now)" > "$work/$key-open-$c.steal"
    gateway "$key" && drained
    echo "$dropped $(dropped_now "$key")" > "$work/$key-open-$c.dropped"
  done
}

start bare "$BARE_BIN" --listen 127.0.0.1:0
echo "${server[*]} $BARE_BIN --listen 127.0.0.1:0" >> "$work/commands.txt"
measure bare
stop
start bare "$BARE_BIN" --listen 127.0.0.1:0 --infer models/transactions/1 --infer-rows "$ROWS"
echo "ORT_DYLIB_PATH=$ORT_DYLIB_PATH ${server[*]} $BARE_BIN --listen 127.0.0.1:0 --infer models/transactions/1 --infer-rows $ROWS" >> "$work/commands.txt"
measure infer
stop

# Serving only, then logged and monitored: one endpoint, version 1, ONNX Runtime.
for key in serving logged; do
  pinned_config "$key" "$work/$key" "" "${LOG_YAML:-}" > "$work/$key.yaml"
  start modelgate "$GATEWAY_BIN" serve --config "$work/$key.yaml" --listen 127.0.0.1:0
  echo "RUST_LOG=warn ${server[*]} $GATEWAY_BIN serve --config \$WORK/$key.yaml --listen 127.0.0.1:0" >> "$work/commands.txt"
  measure "$key"
  stop
done

section="$(python3 - "$work" "$pinned" "$SERVER_CPUS" "$CLIENT_CPUS" "$DURATION" "$WARMUP" "$ROWS" \
  "$CONNECTIONS" "$((SECONDS - started_at))" "$("$OHA" --version)" "$(wrk --version 2>&1 | head -1 | awk '{ print $2 }')" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  "$(git status --porcelain 2>/dev/null | grep -q . && echo ' (with local changes)' || true)" \
  "${PREBUILT:+$GATEWAY_BIN}" "${LOG_YAML:-}" <<'PY'
import json, os, platform, sys, time

(work, pinned, server_cpus, client_cpus, duration, warmup, rows, conns, took, oha, wrk,
 rev, dirty, prebuilt, log_yaml) = sys.argv[1:]
pinned = pinned == "1"
conns = [int(c) for c in conns.split()]

def closed(key, c):
    d = json.load(open(f"{work}/{key}-closed-{c}.json"))
    secs = d["duration_us"] / 1e6
    return {"rps": (d["requests"] - d["non2xx"]) / secs, "p50": d["p50_us"] / 1000,
            "p99": d["p99_us"] / 1000, "p999": d["p999_us"] / 1000, "bad": d["non2xx"] + d["errors"]}

def opened(key, c):
    d = json.load(open(f"{work}/{key}-open-{c}.json"))
    codes = d["statusCodeDistribution"]
    ok = sum(n for code, n in codes.items() if code.startswith("2"))
    bad = sum(n for code, n in codes.items() if not code.startswith("2")) + sum(d.get("errorDistribution", {}).values())
    pct = d["latencyPercentiles"]
    ms = lambda p: (pct.get(p) or 0.0) * 1000
    return {"rps": ok / d["summary"]["total"], "p50": ms("p50"), "p99": ms("p99"), "p999": ms("p99.9"), "bad": bad}

def cpu_count(spec):
    """How many CPUs a taskset list of the simple forms (`0`, `0,2-3`) names."""
    try:
        return sum(int(hi or lo) - int(lo) + 1 for lo, _, hi in (p.partition("-") for p in spec.split(",")))
    except ValueError:
        return None

def stolen_apart(key, c, loop):
    """Steal in ms during one measured run, (server's CPUs, client's CPUs); unpinned, (every
    CPU, 0). None when it could not be read."""
    try:
        s0, c0, s1, c1 = (int(x) for x in open(f"{work}/{key}-{loop}-{c}.steal").read().split())
    except (OSError, ValueError):
        return None
    return (s1 - s0, (c1 - c0) if pinned else 0)

def dropped(key, c, loop):
    """Inference-log rows (calls) dropped during one measured run or while the log drained
    what it queued; None when not counted."""
    try:
        d0, d1 = (float(x) for x in open(f"{work}/{key}-{loop}-{c}.dropped").read().split())
    except (OSError, ValueError):
        return None
    return int(d1 - d0)

def stolen(key, c, loop):
    apart = stolen_apart(key, c, loop)
    return None if apart is None else sum(apart)

keys = [("bare", "bare actix-web"), ("infer", "bare actix-web + ONNX Runtime (infer)"),
        ("serving", "gateway, serving only"),
        ("logged", "gateway, logged + monitored")]
r = {(k, c): {"closed": closed(k, c), "open": opened(k, c)} for k, _ in keys for c in conns}
met = lambda ok: "met" if ok else "**missed**"

o = ["## The full path beside the limit of one core" + ("" if pinned else " (unpinned)"), ""]
where = (f"the server pinned to CPU {server_cpus} and the load generator to CPU {client_cpus} (taskset)"
         if pinned else "server and load generator unpinned, sharing every core")
o.append(f"One run of `loadtests/pin.sh{'' if pinned else ' --unpinned'}` at "
         f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
         f"({f'gateway binary {prebuilt}, scripts at commit {rev}' if prebuilt else f'commit {rev}{dirty}'}) on "
         f"{os.cpu_count()} cores, Linux {platform.release()}, {where}; it took {took} s. "
         f"{rows} row(s) of the v1 fixture per `dataframe_split` request; gateway workers at their "
         f"defaults. Closed loop: wrk {wrk}, {warmup} s warm-up then {duration} s. Open loop: "
         f"oha {oha.split()[-1]} at half the closed loop's rate for {duration} s with "
         f"`--latency-correction`."
         + (f" The logged target's `inference_log` adds `{log_yaml}` (`LOG_YAML`)." if log_yaml else ""))
o.append("")
o.append("| target | c | closed req/s | share | p50 ms | p99 ms | p99.9 ms | open rate | open p50 ms | open p99 ms | open p99.9 ms | non-2xx + errors | log rows dropped | steal ms, closed / open |")
o.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
shown = lambda ms: "?" if ms is None else str(ms)
for k, label in keys:
    for c in conns:
        cl, op = r[(k, c)]["closed"], r[(k, c)]["open"]
        ref = r[("bare", c)]["closed"]["rps"] if k != "logged" else r[("serving", c)]["closed"]["rps"]
        lost = (f"{shown(dropped(k, c, 'closed'))} / {shown(dropped(k, c, 'open'))}"
                if k == "logged" else "-")
        share = "100 %" if k == "bare" else f"{100 * cl['rps'] / ref:.1f} % of {'serving' if k == 'logged' else 'bare'}"
        o.append(f"| {label} | {c} | {cl['rps']:.0f} | {share} | {cl['p50']:.3f} | {cl['p99']:.3f} | "
                 f"{cl['p999']:.3f} | {int(cl['rps']) // 2} | {op['p50']:.3f} | {op['p99']:.3f} | "
                 f"{op['p999']:.3f} | {cl['bad']} / {op['bad']} | "
                 f"{lost} | "
                 f"{shown(stolen(k, c, 'closed'))} / {shown(stolen(k, c, 'open'))} |")
o.append("")
o.append("Against the targets:")
o.append("")
o.append("| c | serving req/s / bare | serving p99 / bare | logged req/s / serving | logged p99 / serving, closed | logged p99 / serving, open | the limit (infer) req/s / bare | serving req/s / infer |")
o.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for c in conns:
    b, i, s, l = (r[(k, c)] for k in ("bare", "infer", "serving", "logged"))
    a = s["closed"]["rps"] / b["closed"]["rps"]
    p = s["closed"]["p99"] / b["closed"]["p99"]
    g = l["closed"]["rps"] / s["closed"]["rps"]
    pc = l["closed"]["p99"] / s["closed"]["p99"]
    po = l["open"]["p99"] / s["open"]["p99"]
    o.append(f"| {c} | {100 * a:.1f} % ({met(a >= 0.5)}, >= 50 %) | {p:.2f}x ({met(p <= 2)}, <= 2x) | "
             f"{100 * g:.1f} % ({met(g >= 0.85)}, >= 85 %) | {pc:.2f}x ({met(pc <= 1.5)}, <= 1.5x) | "
             f"{po:.2f}x ({met(po <= 1.5)}, <= 1.5x) | "
             f"{100 * i['closed']['rps'] / b['closed']['rps']:.1f} % | "
             f"{100 * s['closed']['rps'] / i['closed']['rps']:.1f} % |")
o.append("")
# A logged run that dropped rows logged less than every request: its ratios do not measure
# the full logged path.
lossy = [f"c = {c}, {loop} loop ({n} rows)" for c in conns for loop in ("closed", "open")
         if (n := dropped("logged", c, loop))]
if lossy:
    o.append(f"**Rows dropped:** the logged target dropped inference-log rows in: {'; '.join(lossy)}. "
             "Its ratios there do not measure every request logged.")
    o.append("")
# A run that lost more than 1 % of its time to the hypervisor, on the server's CPUs or on the
# client's, measured the VM, not the server. The limits: 1 % of the run on each side's CPUs.
sides = ([cpu_count(server_cpus), cpu_count(client_cpus)] if pinned else [os.cpu_count(), None])
limits = [None if n is None else int(duration) * 10 * n for n in sides]
runs = [(label, c, loop, stolen_apart(k, c, loop)) for k, label in keys for c in conns
        for loop in ("closed", "open")]
unknown = [f"{label} at c = {c}, {loop} loop" for label, c, loop, apart in runs if apart is None]
disturbed = [f"{label} at c = {c}, {loop} loop ({sum(apart)} ms)" for label, c, loop, apart in runs
             if apart is not None and any(l is not None and ms > l for ms, l in zip(apart, limits))]
measured_cpus = "the server's and the client's CPUs, each side apart" if pinned else "every CPU"
disturbed_cpus = "the server's or the client's CPUs" if pinned else "the CPUs"
if disturbed:
    o.append(f"**Disturbed:** the hypervisor took more than 1 % of a run's time on {disturbed_cpus} "
             f"in: {'; '.join(disturbed)}. Ratios that use those runs do not hold; run again.")
elif not unknown:
    o.append("No measured run lost more than 1 % of its time to the hypervisor "
             f"(steal in /proc/stat, {measured_cpus}).")
if unknown:
    o.append(f"Steal could not be read for: {'; '.join(unknown)} (a CPU list steal_ms does not "
             "take, or no /proc/stat).")
o.append("")
o.append("Commands, in the order run (`$WORK` is the run's temp dir):")
o.append("")
o.append("```sh")
o.extend(l.rstrip("\n").replace(work, "$WORK") for l in open(f"{work}/commands.txt"))
o.append("```")
print("\n".join(o))
PY
)"
echo "$section"
[ -z "$out" ] || { mkdir -p "$(dirname "$out")"; echo "$section" > "$out"; }
echo "pin.sh: done in $((SECONDS - started_at)) s" >&2
