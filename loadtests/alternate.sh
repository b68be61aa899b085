#!/usr/bin/env bash
# Two (or more) gateway binaries, or one binary under two settings, compared in alternating
# short runs on the pinned setup of pin.sh (server on CPU 0, load generator on CPU 1): on a
# shared machine whose speed drifts from minute to minute, runs taken in turn are comparable
# where two pin.sh runs minutes apart are not.
#
#   loadtests/alternate.sh [--logged] [--rate N] [--connections C] [--seconds S] [--rounds R]
#                          [--warmup W] BIN[::YAML[::ENTITY[::LOG]]] BIN[::YAML[::ENTITY[::LOG]]] ...
#
# Each BIN starts fresh for every run (one endpoint, demo version 1 on ONNX Runtime, or
# MODEL_VERSION=2 for the gradient-boosted trees, a one-row request carrying every feature, or
# with ROWS=n (at most 64) n rows; with --logged every request is logged to inference tables in
# a temp dir and monitoring is on, as in pin.sh), gets W s (2) of warm-up (wrk closed loop at C
# connections: with --logged it fills the tables with small files to compact), then S s (5) of wrk closed loop at C connections (8), or
# with --rate N of oha open loop at N req/s with --latency-correction. YAML after `::` is added
# to that binary's config under `inference:` (say `BIN::"inline: {max_us: 0}"`, every job on the pool), ENTITY after
# a second `::` to its served entity (say `BIN::::"batching: {max_rows: 32}"`), LOG after a third
# under its `inference_log:` (say `BIN::::::"writer_nice: 19"`, with --logged); LOG_YAML adds
# keys under `inference_log:` for every run. With --logged each line also gives the inference-log
# rows dropped by the end of the measured part (payload table, one row a call, any reason): a
# run that dropped rows did not log every request. Prints one line per run: label, req/s, p99 ms (open
# loop: also p50 and p99.9), and the ms the hypervisor took from CPUs 0 and 1 during the
# measured part (steal, counted by the kernel in 10 ms ticks: a run that lost more than 1 % of
# its time to it measured the VM). Needs wrk, oha, taskset and python3, as pin.sh does.
set -euo pipefail
logged=0 rate="" c=8 secs=5 rounds=3 warmup=2
while [ $# -gt 0 ]; do
  case "$1" in
    --logged) logged=1; shift ;;
    --rate) rate="$2"; shift 2 ;;
    --connections) c="$2"; shift 2 ;;
    --seconds) secs="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "name at least one gateway binary (see --help)" >&2; exit 2; }
rows="${ROWS:-1}"
[[ "$rows" =~ ^[1-9][0-9]*$ ]] && [ "$rows" -le 64 ] || { echo "ROWS must be 1 to 64 (the fixture's rows), not '$rows'" >&2; exit 2; }
for n in "$c" "$secs" "$rounds" "$warmup" ${rate:+"$rate"}; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "counts must be positive whole numbers, not '$n'" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "needs wrk: apt-get install -y wrk" >&2; exit 2; }
OHA="$(command -v oha || echo "$HOME/.cargo/bin/oha")"
[ -z "$rate" ] || [ -x "$OHA" ] || { echo "needs oha: cargo install --locked oha --version 1.16.0" >&2; exit 2; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)"
export ORT_DYLIB_PATH RUST_LOG=warn
# shellcheck source=loadtests/pinned_config.sh
source loadtests/pinned_config.sh
pinned_work  # sets `work`; the gateway started there is stopped at exit
write_load_files "$work" "$rows"
run=0
for round in $(seq "$rounds"); do
  for target in "$@"; do
    run=$((run + 1))
    bin="${target%%::*}" extra="" entity="" log=""
    [ "$bin" = "$target" ] || extra="${target#*::}"
    case "$extra" in *::*) entity="${extra#*::}" extra="${extra%%::*}" ;; esac
    case "$entity" in *::*) log="${entity#*::}" entity="${entity%%::*}" ;; esac
    # LOG_YAML's keys, then this binary's, each on a line of its own under inference_log:.
    log_lines="${LOG_YAML:-}${LOG_YAML:+${log:+$'\n  '}}$log"
    kind=serving
    [ "$logged" = 0 ] || kind=logged
    pinned_config "$kind" "$work/run-$run" "$extra" "$log_lines" "$entity" > "$work/c.yaml"
    start_pinned 0 "$bin" "$work/c.yaml" "$work"
    url="$base/serving-endpoints/t/invocations"
    taskset -c 1 wrk -t1 -c"$c" -d"${warmup}s" -s "$work/post.lua" "$url" > /dev/null
    stolen="$(steal_ms 0,1)"
    if [ -n "$rate" ]; then
      result="$(taskset -c 1 "$OHA" -z "${secs}s" -c "$c" -q "$rate" --latency-correction -w -t 10s --no-tui \
        --output-format json -m POST -T application/json -D "$work/body.json" "$url" | python3 -c '
import json, sys
d = json.load(sys.stdin); p = d["latencyPercentiles"]
ok = sum(n for code, n in d["statusCodeDistribution"].items() if code.startswith("2"))
ms = [p[k] * 1000 for k in ("p50", "p99", "p99.9")]
print("%.0f req/s, p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms" % (ok / d["summary"]["total"], *ms))')"
    else
      out="$(taskset -c 1 wrk -t1 -c"$c" -d"${secs}s" -s "$work/post.lua" "$url" | tail -1)" || exit 1
      read -r rps p99 <<< "$out"
      result="$rps req/s, p99 $p99 ms"
    fi
    result="$result, steal $(($(steal_ms 0,1) - stolen)) ms"
    if [ "$logged" = 1 ]; then
      result="$result, $(log_rows_dropped "$base") log rows dropped"
    fi
    log_label=""
    [ -z "$log" ] || log_label=" {$log}"
    echo "round $round, $(basename "$bin")${extra:+ ($extra)}${entity:+ [$entity]}$log_label, c=$c${rate:+, open loop at $rate req/s}: $result"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  done
done
