#!/usr/bin/env bash
# Do the inference tables keep up? The release gateway with every request logged (pin.sh's
# `logged` config: one endpoint, demo version 1 on ONNX Runtime, one-row requests, monitoring
# on) pinned to 1, 2, 4 ... cores in turn, saturated by wrk on the cores left over, then stopped
# with SIGTERM (the writer commits what is queued). One markdown row per core count: req/s and
# p99 as wrk saw them, the 2xx answers the gateway counted, the rows its writer committed and
# dropped (by reason) by its own metrics, the rows Python deltalake reads back from the payload
# table, and the gateway's stderr lines per minute while wrk ran (start and stop lines apart).
#
#   loadtests/logging_throughput.sh [--cores "1 2"] [--connections C] [--seconds S] [BIN]
#
# BIN is a release gateway binary (default: built here). Cores are counted from CPU 0; wrk runs
# on the rest, or, where none is left (2 cores on a 2-core machine), on the last core beside the
# server (the row says "shared"). LOG_YAML adds keys under `inference_log:` (say
# `LOG_YAML='catch_up: false'`). The dropped rows are the gateway's count when wrk stopped
# (what the SIGTERM flush could not commit shows as rows answered but not read back). Needs
# wrk, taskset, curl and python3.
set -euo pipefail
cores="" c=32 secs=10
while [ $# -gt 0 ]; do
  case "$1" in
    --cores) cores="$2"; shift 2 ;;
    --connections) c="$2"; shift 2 ;;
    --seconds) secs="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
total="$(nproc)"
if [ -z "$cores" ]; then
  cores=""
  for n in 1 2 4 8 16; do [ "$n" -le "$total" ] && cores="$cores $n"; done
fi
for n in $cores "$c" "$secs"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "counts must be positive whole numbers, not '$n'" >&2; exit 2; }
done
for n in $cores; do
  [ "$n" -le "$total" ] || { echo "$n cores asked for, this machine has $total" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "needs wrk: apt-get install -y wrk" >&2; exit 2; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)"
export ORT_DYLIB_PATH
PYTHON="$(scripts/delta-venv.sh)"
bin="${1:-}"
if [ -z "$bin" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/modelgate-target}"
  cargo build --release --locked --bin modelgate >&2
  bin="$CARGO_TARGET_DIR/release/modelgate"
fi
# shellcheck source=loadtests/pinned_config.sh
source loadtests/pinned_config.sh
pinned_work  # sets `work`; the gateway started there is stopped at exit
MODEL_VERSION=1  # the body and the config serve version 1
write_load_files "$work" 1

# Sums the samples of METRIC in a Prometheus text page whose labels contain every FILTER.
metric_sum() {  # $1: page file, $2: metric, $3...: label filters (key="value")
  local page=$1 name=$2; shift 2
  python3 - "$page" "$name" "$@" <<'PY'
import re, sys
page, name, filters = sys.argv[1], sys.argv[2], sys.argv[3:]
total = 0.0
for line in open(page):
    m = re.match(r'^([a-z_]+)(\{[^}]*\})? (\S+)$', line.strip())
    if m and m.group(1) == name and all(f in (m.group(2) or "") for f in filters):
        total += float(m.group(3))
print(int(total))
PY
}

echo "wrk closed loop, c=$c, ${secs} s after 2 s of warm-up, one-row requests, every request logged; $total cores here"
echo
echo "| server cores | load cores | req/s | p99 ms | 2xx answered | rows committed (metrics) | rows read back (deltalake) | rows dropped (when wrk stopped) | stderr lines/min under load |"
echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
for n in $cores; do
  server_cpus="0-$((n - 1))"
  if [ "$n" -lt "$total" ]; then
    load_cpus="$n-$((total - 1))" load_label="$((total - n))"
  else
    load_cpus="$((total - 1))" load_label="1, shared"
  fi
  threads="$(( total - n > 0 ? total - n : 1 ))"
  [ "$threads" -le "$c" ] || threads="$c"  # wrk wants a connection per thread at least
  dir="$work/cores-$n"
  pinned_config logged "$dir" "" "${LOG_YAML:-}" > "$dir.yaml"
  start_pinned "$server_cpus" "$bin" "$dir.yaml" "$work"
  url="$base/serving-endpoints/t/invocations"
  lines_before="$(wc -l < "$work/err")"
  taskset -c "$load_cpus" wrk -t"$threads" -c"$c" -d2s -s "$work/post.lua" "$url" > /dev/null
  report="$(taskset -c "$load_cpus" wrk -t"$threads" -c"$c" -d"${secs}s" -s "$work/post.lua" "$url")" \
    || { echo "wrk failed: $report" >&2; exit 1; }
  read -r rps p99 <<< "$(tail -1 <<< "$report")"
  # Every answer is counted once wrk has stopped; the writer may still hold rows.
  curl -s -m 10 "$base/metrics" > "$work/before-stop"
  lines_under_load=$(( $(wc -l < "$work/err") - lines_before ))
  answered="$(metric_sum "$work/before-stop" modelgate_requests_total 'endpoint="t"' 'status_class="2xx"')"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  # The final counts: the SIGTERM flush is in the log it printed, so ask the tables.
  # (os._exit: the reader's interpreter teardown can abort, as tests/readers/delta_tables.py notes.)
  read_back="$("$PYTHON" -c 'import os, sys; from deltalake import DeltaTable; print(DeltaTable(sys.argv[1]).to_pyarrow_table().num_rows, flush=True); os._exit(0)' "$dir/tables/t_payload")"
  committed_before="$(metric_sum "$work/before-stop" modelgate_inference_log_rows_total 'endpoint="t"' 'table="payload"')"
  dropped="$(python3 - "$work/before-stop" <<'PY'
import re, sys
by = {}
for line in open(sys.argv[1]):
    m = re.match(r'^modelgate_inference_log_dropped_rows_total\{(.*)\} (\S+)$', line.strip())
    if m and 'endpoint="t"' in m.group(1) and 'table="payload"' in m.group(1):
        reason = re.search(r'reason="([^"]*)"', m.group(1)).group(1)
        by[reason] = by.get(reason, 0) + int(float(m.group(2)))
print(", ".join(f"{n} {r}" for r, n in sorted(by.items()) if n) or "0")
PY
)"
  per_minute="$(python3 -c "print(round($lines_under_load * 60 / ($secs + 2)))")"
  echo "| $n | $load_label | $rps | $p99 | $answered | $committed_before before SIGTERM | $read_back | $dropped | $per_minute |"
done
