#!/usr/bin/env bash
# JSON REST, REST with binary tensors and gRPC against one gateway, in one run, on the pinned
# setup (server on CPU 0, load generator on CPU 1): modelgate-protocols sends the same V2
# inference (demo version 1 on ONNX Runtime, every feature in the request) over each wire in
# turn, at 1 and 64 rows.
#
#   loadtests/protocols.sh BIN [--connections C] [--seconds S] [--rounds R]
#
# BIN is a release gateway; modelgate-protocols is built (release) from loadtests/scenarios.
# Prints, per row count, one line per wire: req/s, p50, p99 and the ratio to JSON REST.
set -euo pipefail
[ $# -ge 1 ] || { echo "name the gateway binary (see the header of $0)" >&2; exit 2; }
bin="$1"; shift
cd "$(dirname "$0")/.."
source loadtests/pinned_config.sh
cargo build --release -q -p modelgate-loadtest --bin modelgate-protocols
tool="${CARGO_TARGET_DIR:-target}/release/modelgate-protocols"
pinned_work
{
  pinned_config serving "$work"
  printf 'server:\n  grpc_listen: 127.0.0.1:0\n'
} > "$work/config.yaml"
start_pinned 0 "$bin" "$work/config.yaml" "$work"
grpc=""
for _ in $(seq 100); do
  grpc="$(sed -n 's/^modelgate gRPC listening on //p' "$work/out")"
  [ -n "$grpc" ] && break
  sleep 0.1
done
[ -n "$grpc" ] || { echo "no gRPC listener line" >&2; exit 1; }
for rows in 1 64; do
  taskset -c 1 "$tool" --rest "$base" --grpc "$grpc" --model t --rows "$rows" "$@"
done
