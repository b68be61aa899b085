# The gateway config of the pinned load tests (pin.sh, alternate.sh); source it.
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
