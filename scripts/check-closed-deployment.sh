#!/usr/bin/env bash
# Closed by default (issue 15): the Helm chart and the container image do not come up open.
#   MODELGATE_BIN=target/debug/modelgate scripts/check-closed-deployment.sh
# scripts/lint-helm.sh runs it (CI: after cargo test, with the binary the tests built) and
# passes the helm and the Python (with PyYAML) it installed; standalone it finds them in
# ~/.cache (run scripts/lint-helm.sh once first).
#
# 1. The chart (helm template, no cluster):
#    - renders nothing without tokens (the plain defaults fail, naming auth.tokens and
#      auth.allowAnonymous), nothing open without auth.allowAnonymous: true;
#    - with tokens: auth on, the tokens file from the chart's Secret, scoring on 0.0.0.0, the
#      admin listener on 127.0.0.1 with no container port, Service or NetworkPolicy rule for it,
#      the image's MODELGATE__AUTH__ENABLED overridden with the config's value, probes on the
#      open health routes;
#    - the NetworkPolicy (ci/full-values.yaml): every rule names its peers, the admin port only
#      for networkPolicy.adminFrom; NOTES.txt says how to make a token, no stale "yet".
# 2. The binary with the rendered configs (needs MODELGATE_BIN; else skipped, said so):
#    - check-config passes the rendered configs, and refuses (exit 2, naming
#      auth.allow_anonymous) the open one once allow_anonymous is taken out, as `serve` does;
#    - `serve` with the chart's default config (ports and paths moved to loopback and a temp
#      folder; tokens from the rendered Secret): health and /metrics open, scoring 401 without a
#      token, the admin API 404 on the scoring port and 401/200 on the admin port.
# 3. The image (no Docker engine here: its final stage's MODELGATE* ENV and CMD are read from the
#    Dockerfile and run with the binary in a copy of its working directory):
#    - without tokens it refuses to start, naming $MODELGATE_TOKENS;
#    - with MODELGATE_TOKENS the demo scores with a token, 401 without, /livez (the
#      HEALTHCHECK) open;
#    - the demo opt-in of docs/docker.md (auth off + allow_anonymous) passes check-config with
#      the CMD's 0.0.0.0 listener, and auth off alone does not.
# Everything started listens on 127.0.0.1. A refusal that must happen before binding is run with
# a TEST-NET-1 address (192.0.2.1, never assigned): if it did not happen, the bind fails and the
# check fails; nothing is ever opened beyond loopback.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
chart="$root/helm/modelgate"
helm="${MODELGATE_HELM:-$HOME/.cache/modelgate-helm/helm}"
py="${MODELGATE_PYTHON:-$HOME/.cache/modelgate-kubevalidate/bin/python}"
bin="${MODELGATE_BIN:-}"
k8s_version="1.35.0"
[ -x "$helm" ] || { echo "FAIL: no helm at $helm (run scripts/lint-helm.sh once, or set MODELGATE_HELM)" >&2; exit 1; }
"$py" -c 'import yaml' 2>/dev/null || { echo "FAIL: $py has no PyYAML (set MODELGATE_PYTHON)" >&2; exit 1; }
export HELM_CACHE_HOME="${HELM_CACHE_HOME:-$(dirname "$helm")/cache}"
export HELM_CONFIG_HOME="${HELM_CONFIG_HOME:-$(dirname "$helm")/config}"
export HELM_DATA_HOME="${HELM_DATA_HOME:-$(dirname "$helm")/data}"

work="$(mktemp -d)"
# The gateway this script has running, if any (one at a time; cleared once it has ended, so a
# reused process id is never signalled).
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
# `stop`: ends the running gateway (SIGTERM: it drains) and waits for it.
stop() {
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
}
trap cleanup EXIT

ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# Reads rendered manifests: `q FILE EXPR` evaluates a Python expression over `docs` (the
# documents) and prints it (JSON for lists and dicts, plain for strings and numbers).
cat >"$work/q.py" <<'EOF'
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def kind(k, name=None):
    found = [d for d in docs if d["kind"] == k and (name is None or d["metadata"]["name"] == name)]
    return found[0] if found else None
def config():
    return yaml.safe_load(kind("ConfigMap", "mg-modelgate")["data"]["config.yaml"])
def container():
    return kind("Deployment")["spec"]["template"]["spec"]["containers"][0]
def env(name):
    return next((e.get("value") for e in container().get("env", []) if e["name"] == name), None)
v = eval(sys.argv[2])
print(json.dumps(v, sort_keys=True) if isinstance(v, (list, dict, bool)) or v is None else v)
EOF
q() { "$py" "$work/q.py" "$@"; }
# `expect_eq WHAT GOT WANT`
expect_eq() {
  [ "$2" = "$3" ] || fail "$1: got $2, want $3"
  ok "$1: $3"
}

# Status of one HTTP call (status.py: a file named http.py would hide the http package): `http METHOD URL [TOKEN] [JSON BODY]` (000: no answer).
cat >"$work/status.py" <<'EOF'
import sys, urllib.request, urllib.error
method, url = sys.argv[1], sys.argv[2]
token = sys.argv[3] if len(sys.argv) > 3 else ""
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = urllib.request.Request(url, method=method, data=body)
if token:
    req.add_header("Authorization", "Bearer " + token)
if body is not None:
    req.add_header("Content-Type", "application/json")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    print(opener.open(req, timeout=10).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
http() { "$py" "$work/status.py" "$@"; }
# `expect_http WANT METHOD URL [TOKEN] [BODY] -- what`
expect_http() {
  local want="$1"; shift
  local args=()
  while [ "$1" != "--" ]; do args+=("$1"); shift; done
  shift
  local got
  got="$(http "${args[@]}")"
  [ "$got" = "$want" ] || fail "$*: ${args[0]} ${args[1]} answered $got, want $want"
  ok "$*: ${args[0]} ${args[1]} -> $want"
}
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# `wait_http URL PID LOG`: until URL answers 200 (60 s), or fail if the process ended.
wait_http() {
  local i
  for i in $(seq 1 300); do
    [ "$(http GET "$1")" = 200 ] && return 0
    if ! kill -0 "$2" 2>/dev/null; then cat "$3" >&2; fail "the gateway exited before $1 answered"; fi
    sleep 0.2
  done
  cat "$3" >&2
  fail "$1 did not answer 200 within 60 s"
}
# `expect_refusal WHAT LOG PATTERN RC -- COMMAND...`: COMMAND exits with RC (2: a configuration
# error; 1: an error at start) within 30 s, and LOG (its stderr) matches PATTERN.
expect_refusal() {
  local what="$1" log="$2" pattern="$3" want="$4"; shift 5
  local rc=0
  timeout 30 "$@" >"$log.out" 2>"$log" || rc=$?
  [ "$rc" = "$want" ] || { cat "$log" >&2; fail "$what: exit $rc, want $want (a refusal)"; }
  grep -q -- "$pattern" "$log" || { cat "$log" >&2; fail "$what: the refusal does not name $pattern"; }
  ok "$what: refused (exit $rc): $(grep -m1 -- "$pattern" "$log" | cut -c1-200)"
}

# --- 1. the chart ---
render() { # NAME HELM-ARGS...: renders into $work/NAME.yaml, or fails
  local name="$1"; shift
  "$helm" template mg "$chart" --namespace modelgate --kube-version "$k8s_version" "$@" >"$work/$name.yaml" 2>"$work/$name.err" \
    || { cat "$work/$name.err" >&2; fail "helm template ($name) failed"; }
}
# `render_refused NAME PATTERN HELM-ARGS...`: helm refuses, naming PATTERN.
render_refused() {
  local name="$1" pattern="$2"; shift 2
  if "$helm" template mg "$chart" --namespace modelgate --kube-version "$k8s_version" "$@" >"$work/$name.yaml" 2>"$work/$name.err"; then
    fail "helm template ($name) rendered; it must refuse"
  fi
  grep -q -- "$pattern" "$work/$name.err" || { cat "$work/$name.err" >&2; fail "helm template ($name): the refusal does not name $pattern"; }
  ok "helm template ($name) refused: $(grep -m1 -o 'execution error.*' "$work/$name.err" | cut -c1-200)..."
}

render_refused "plain defaults" "auth.tokens"
grep -q "auth.allowAnonymous=true" "$work/plain defaults.err" || fail "the no-token refusal does not say how to opt in to an open deployment"
grep -q "openssl rand" "$work/plain defaults.err" || fail "the no-token refusal does not say how to make a token"
render_refused "auth.enabled=false" "auth.allowAnonymous" --set auth.enabled=false
render_refused "auth.enabled=false, allowAnonymous=false" "auth.allowAnonymous" --set auth.enabled=false --set auth.allowAnonymous=false
render_refused "admin Service on loopback" "admin.address" -f "$chart/ci/default-values.yaml" --set admin.service.enabled=true
render_refused "NetworkPolicy without scoringFrom" "networkPolicy.scoringFrom" -f "$chart/ci/default-values.yaml" --set networkPolicy.enabled=true
# Promotion rules decide on one process's labels: two replicas would be two deciders.
render_refused "promotion with two replicas" "promotion decisions are made per replica" -f "$chart/ci/default-values.yaml" \
  --set replicaCount=2 --set config.fleet.redis_url=redis://redis:6379 \
  --set 'config.endpoints[0].name=tx,config.endpoints[0].promotion.champion=a,config.endpoints[0].promotion.challenger=b'
# Replicas without the shared store would each keep their own endpoint configs.
render_refused "two replicas without a shared store" "needs the fleet's shared store" -f "$chart/ci/default-values.yaml" --set replicaCount=2
render_refused "autoscaling without a shared store" "needs the fleet's shared store" -f "$chart/ci/default-values.yaml" --set autoscaling.enabled=true
render two-replicas -f "$chart/ci/default-values.yaml" --set replicaCount=2 --set config.fleet.redis_url=redis://redis:6379
expect_eq "two replicas with a shared store: replicas, fleet.redis_url" \
  "$(q "$work/two-replicas.yaml" '[kind("Deployment")["spec"]["replicas"], config()["fleet"]["redis_url"]]')" '[2, "redis://redis:6379"]'

render defaults -f "$chart/ci/default-values.yaml"
d="$work/defaults.yaml"
expect_eq "defaults: config auth" "$(q "$d" 'config()["auth"]')" \
  '{"allow_anonymous": false, "enabled": true, "open_health": true, "open_metrics": true, "tokens_file": "/etc/modelgate-tokens/tokens.yaml"}'
expect_eq "defaults: server.listen" "$(q "$d" 'config()["server"]["listen"]')" "0.0.0.0:8080"
expect_eq "defaults: server.admin_listen" "$(q "$d" 'config()["server"]["admin_listen"]')" "127.0.0.1:8081"
expect_eq "defaults: container env MODELGATE__AUTH__ENABLED (over the image's)" "$(q "$d" 'env("MODELGATE__AUTH__ENABLED")')" "true"
expect_eq "defaults: container args (listeners from the config)" "$(q "$d" 'container()["args"]')" '["serve", "--config", "/etc/modelgate/config.yaml"]'
expect_eq "defaults: container ports (no admin port)" "$(q "$d" '[p["name"] for p in container()["ports"]]')" '["http"]'
expect_eq "defaults: Service ports" "$(q "$d" '[p["name"] for p in kind("Service", "mg-modelgate")["spec"]["ports"]]')" '["http"]'
expect_eq "defaults: no admin Service" "$(q "$d" 'kind("Service", "mg-modelgate-admin")')" "null"
expect_eq "defaults: NetworkPolicy (opt-in)" "$(q "$d" 'kind("NetworkPolicy")')" "null"
expect_eq "defaults: tokens mounted from the chart's Secret" \
  "$(q "$d" '[(v["secret"]["secretName"], v["secret"]["items"]) for v in kind("Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "tokens"]')" \
  '[["mg-modelgate-tokens", [{"key": "tokens.yaml", "path": "tokens.yaml"}]]]'
expect_eq "defaults: probes on the open health routes of the scoring port" \
  "$(q "$d" '[(container()[p]["httpGet"]["path"], container()[p]["httpGet"]["port"]) for p in ("startupProbe", "livenessProbe", "readinessProbe")]')" \
  '[["/livez", "http"], ["/livez", "http"], ["/readyz", "http"]]'
q "$d" 'kind("Secret", "mg-modelgate-tokens")["stringData"]["tokens.yaml"]' >"$work/tokens.yaml"

render existing-secret --set auth.existingSecret=callers --set auth.existingSecretKey=list.yaml
expect_eq "existingSecret: tokens_file" "$(q "$work/existing-secret.yaml" 'config()["auth"]["tokens_file"]')" "/etc/modelgate-tokens/list.yaml"
expect_eq "existingSecret: no Secret rendered" "$(q "$work/existing-secret.yaml" 'kind("Secret")')" "null"

render anonymous -f "$chart/ci/anonymous-values.yaml"
a="$work/anonymous.yaml"
expect_eq "anonymous: config auth.enabled, allow_anonymous" "$(q "$a" '[config()["auth"]["enabled"], config()["auth"]["allow_anonymous"]]')" "[false, true]"
expect_eq "anonymous: container env MODELGATE__AUTH__ENABLED" "$(q "$a" 'env("MODELGATE__AUTH__ENABLED")')" "false"
expect_eq "anonymous: no tokens Secret" "$(q "$a" 'kind("Secret")')" "null"

render full -f "$chart/ci/full-values.yaml"
f="$work/full.yaml"
expect_eq "full: server.admin_listen" "$(q "$f" 'config()["server"]["admin_listen"]')" "0.0.0.0:9081"
# preStop 5 + shutdown 20 + inference-log flush 30 + spans 2 x 5 (tracing on) + margin 5.
expect_eq "full: the grace period allows for the last span export" \
  "$(q "$f" 'kind("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]')" "70"
expect_eq "full: gRPC beside TLS" "$(q "$f" '[config()["server"]["grpc_listen"], "tls" in config()["server"]]')" '["0.0.0.0:8085", true]'
expect_eq "full: admin Service" "$(q "$f" '[(p["name"], p["port"], p["targetPort"]) for p in kind("Service", "mg-modelgate-admin")["spec"]["ports"]]')" '[["admin", 9081, "admin"]]'
expect_eq "full: NetworkPolicy selects the gateway's pods" "$(q "$f" 'kind("NetworkPolicy")["spec"]["podSelector"]["matchLabels"] == kind("Deployment")["spec"]["selector"]["matchLabels"]')" "true"
expect_eq "full: NetworkPolicy: every rule names its peers (a rule without is open to all)" \
  "$(q "$f" 'all(r.get("from") for r in kind("NetworkPolicy")["spec"]["ingress"])')" "true"
expect_eq "full: NetworkPolicy: who reaches the admin port" \
  "$(q "$f" '[r["from"] for r in kind("NetworkPolicy")["spec"]["ingress"] if any(p["port"] == "admin" for p in r["ports"])]')" \
  '[[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ml-platform"}}}]]'
expect_eq "full: NetworkPolicy: Prometheus reaches the scoring port (/metrics)" \
  "$(q "$f" 'any(r["ports"] == [{"port": "http", "protocol": "TCP"}] and r["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"} for r in kind("NetworkPolicy")["spec"]["ingress"])')" "true"
render full-no-admin-peers -f "$chart/ci/full-values.yaml" --set networkPolicy.adminFrom=null --set networkPolicy.metricsFrom=null
expect_eq "full, no adminFrom/metricsFrom: only the scoring rules, every one with peers" \
  "$(q "$work/full-no-admin-peers.yaml" '[(bool(r.get("from")), [p["port"] for p in r["ports"]]) for r in kind("NetworkPolicy")["spec"]["ingress"]]')" \
  '[[true, ["http", "grpc"]], [true, ["http"]]]'

# NOTES.txt: helm template leaves it out; a client-side dry run renders it.
notes() { "$helm" install mg "$chart" --namespace modelgate --dry-run=client "$@" 2>&1 | sed -n '/^NOTES:/,$p'; }
notes -f "$chart/ci/default-values.yaml" >"$work/notes-defaults.txt"
notes -f "$chart/ci/full-values.yaml" >"$work/notes-full.txt"
notes -f "$chart/ci/anonymous-values.yaml" >"$work/notes-anonymous.txt"
for n in defaults full anonymous; do
  [ -s "$work/notes-$n.txt" ] || fail "NOTES.txt ($n) did not render"
  if grep -n -i -w "yet" "$work/notes-$n.txt"; then fail "NOTES.txt ($n) says something is not done yet"; fi
done
grep -q 'openssl rand -hex 32' "$work/notes-defaults.txt" || fail "NOTES.txt does not say how to make a token"
grep -q 'port-forward deploy/mg-modelgate 8081:8081' "$work/notes-defaults.txt" || fail "NOTES.txt does not say how to reach the loopback admin port"
grep -q 'Auth: OFF' "$work/notes-anonymous.txt" || fail "NOTES.txt does not say an anonymous deployment is open"
ok "NOTES.txt: how to make a token and reach the admin port; open deployments said so; no \"yet\""

# --- 2. the binary with the rendered configs ---
if [ ! -x "$bin" ]; then
  echo "skipped: the binary checks (no built binary; set MODELGATE_BIN)"
  echo "closed deployment: chart checks passed (binary checks skipped)"
  exit 0
fi
echo "binary: $bin"
for n in defaults anonymous full; do
  "$py" - "$work/$n.yaml" "$work/$n-config.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "mg-modelgate")
open(sys.argv[2], "w").write(cm["data"]["config.yaml"])
EOF
done
# Only the Deployment's environment counts: none from this shell.
clean_env=(env -i "PATH=$PATH" "HOME=$HOME")
[ -n "${ORT_DYLIB_PATH:-}" ] && clean_env+=("ORT_DYLIB_PATH=$ORT_DYLIB_PATH")
for n in defaults anonymous full; do
  "${clean_env[@]}" "$bin" check-config --config "$work/$n-config.yaml" >"$work/cc-$n.out" 2>"$work/cc-$n.err" \
    || { cat "$work/cc-$n.err" >&2; fail "check-config refuses the rendered config ($n)"; }
  ok "check-config passes the rendered config ($n)"
done
grep -q "admin_listen: 127.0.0.1:8081" "$work/cc-defaults.out" || fail "check-config does not show server.admin_listen of the rendered defaults"

# The open config without its explicit opt-in (a ConfigMap edited by hand, the chart's guard
# bypassed): refused by the binary itself.
"$py" - "$work/anonymous-config.yaml" "$work/open-config.yaml" <<'EOF'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
del cfg["auth"]["allow_anonymous"]
yaml.safe_dump(cfg, open(sys.argv[2], "w"))
EOF
expect_refusal "check-config, rendered config with auth off and no allow_anonymous (0.0.0.0:8080)" "$work/open-cc.err" "auth.allow_anonymous" 2 -- \
  "${clean_env[@]}" "$bin" check-config --config "$work/open-config.yaml"
grep -q "auth.enabled" "$work/open-cc.err" || fail "the refusal does not name auth.enabled"
mkdir -p "$work/srv/models" "$work/srv/tables"
srv_env=("MODELGATE__REGISTRY__PATH=$work/srv/models" "MODELGATE__CONTROL__STATE_FILE=$work/srv/endpoints.json"
  "MODELGATE__INFERENCE_LOG__LOCATION=$work/srv/tables")
expect_refusal "serve, rendered config with auth off and no allow_anonymous" "$work/open-serve.err" "auth.allow_anonymous" 2 -- \
  "${clean_env[@]}" "${srv_env[@]}" MODELGATE__SERVER__LISTEN=192.0.2.1:8080 MODELGATE__SERVER__ADMIN_LISTEN=127.0.0.1:0 \
  "$bin" serve --config "$work/open-config.yaml"
expect_refusal "serve, same, only the admin listener beyond loopback" "$work/open-admin.err" "server.admin_listen" 2 -- \
  "${clean_env[@]}" "${srv_env[@]}" MODELGATE__SERVER__LISTEN=127.0.0.1:0 MODELGATE__SERVER__ADMIN_LISTEN=192.0.2.1:8081 \
  "$bin" serve --config "$work/open-config.yaml"
grep -q "auth.allow_anonymous" "$work/open-admin.err" || fail "the admin-listener refusal does not name auth.allow_anonymous"

# The chart's defaults, served: its config and container env, tokens from its Secret (the
# hash of "test"), ports and paths moved to loopback and a temp folder.
main_port="$(free_port)" admin_port="$(free_port)"
[ "$main_port" != "$admin_port" ] || admin_port="$(free_port)"
"${clean_env[@]}" "${srv_env[@]}" \
  "MODELGATE__AUTH__ENABLED=$(q "$d" 'env("MODELGATE__AUTH__ENABLED")')" \
  "MODELGATE__AUTH__TOKENS_FILE=$work/tokens.yaml" \
  "MODELGATE__SERVER__LISTEN=127.0.0.1:$main_port" "MODELGATE__SERVER__ADMIN_LISTEN=127.0.0.1:$admin_port" \
  "$bin" serve --config "$work/defaults-config.yaml" >"$work/serve-defaults.log" 2>&1 &
pid=$!
main="http://127.0.0.1:$main_port" admin="http://127.0.0.1:$admin_port"
wait_http "$main/livez" "$pid" "$work/serve-defaults.log"
expect_http 200 GET "$main/livez" -- "chart defaults: liveness probe, no token"
expect_http 200 GET "$main/readyz" -- "chart defaults: readiness probe, no token"
expect_http 200 GET "$main/metrics" -- "chart defaults: /metrics open (auth.open_metrics)"
expect_http 401 POST "$main/serving-endpoints/transactions/invocations" "" '{"inputs": [[1]]}' -- "chart defaults: scoring without a token"
expect_http 401 POST "$main/serving-endpoints/transactions/invocations" "wrong" '{"inputs": [[1]]}' -- "chart defaults: scoring with an unknown token"
expect_http 404 POST "$main/serving-endpoints/transactions/invocations" test '{"inputs": [[1]]}' -- "chart defaults: scoring with the token (past auth: no such endpoint)"
expect_http 404 GET "$main/api/2.0/serving-endpoints" -- "chart defaults: admin API on the scoring port, no token"
expect_http 404 GET "$main/api/2.0/serving-endpoints" test -- "chart defaults: admin API on the scoring port, manage token"
expect_http 401 GET "$admin/api/2.0/serving-endpoints" -- "chart defaults: admin port, no token"
expect_http 200 GET "$admin/api/2.0/serving-endpoints" test -- "chart defaults: admin port, manage token"
expect_http 200 GET "$admin/livez" -- "chart defaults: health on the admin port"
stop

# --- 3. the image: its final stage's ENV and CMD ---
"$py" - "$root/Dockerfile" "$work/image" <<'EOF'
import json, pathlib, re, shlex, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
lines = [l.strip() for l in text.splitlines()]
final = max(i for i, l in enumerate(lines) if l.upper().startswith("FROM "))
env, cmd, workdir = {}, None, None
for l in lines[final:]:
    word = l.split(None, 1)[0].upper() if l and not l.startswith("#") else ""
    if word == "ENV":
        for pair in shlex.split(l.split(None, 1)[1]):
            k, _, v = pair.partition("=")
            if k.startswith("MODELGATE"):
                env[k] = v
    elif word == "CMD":
        cmd = json.loads(l.split(None, 1)[1])
    elif word == "WORKDIR":
        workdir = l.split(None, 1)[1]
out = pathlib.Path(sys.argv[2])
out.mkdir()
(out / "env").write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
(out / "cmd").write_text("".join(a + "\n" for a in cmd))
print(f"image: WORKDIR {workdir}, ENV {' '.join(f'{k}={v}' for k, v in sorted(env.items())) or '(no MODELGATE variable)'}, CMD {cmd}")
EOF
mapfile -t image_env <"$work/image/env"
mapfile -t image_cmd <"$work/image/cmd"
# The image's working directory: config/ copied (the state file is written beside it), models/
# as a link (read only).
img="$work/image/srv"
mkdir -p "$img"
cp -r "$root/config" "$img/config"
ln -s "$root/models" "$img/models"
# `cmd_with_listen ADDR`: the CMD with its --listen value replaced.
cmd_with_listen() {
  local out=() i
  for ((i = 0; i < ${#image_cmd[@]}; i++)); do
    if [ "${image_cmd[$i]}" = "--listen" ]; then out+=(--listen "$1"); i=$((i + 1)); else out+=("${image_cmd[$i]}"); fi
  done
  printf '%s\n' "${out[@]}"
}
grep -qx -- "--listen" "$work/image/cmd" || fail "the image's CMD has no --listen (this check replaces it)"
image_listen="$(grep -A1 -x -- "--listen" "$work/image/cmd" | tail -1)"
mapfile -t refused_cmd < <(cmd_with_listen 192.0.2.1:8080)
(cd "$img" && expect_refusal "image: docker run with no tokens" "$work/image-no-tokens.err" 'MODELGATE_TOKENS' 1 -- \
  "${clean_env[@]}" "${image_env[@]}" "$bin" "${refused_cmd[@]}")
token="$("$py" -c 'import secrets; print(secrets.token_hex(32))')"
hash="$(printf %s "$token" | sha256sum | cut -d' ' -f1)"
img_port="$(free_port)"
mapfile -t served_cmd < <(cmd_with_listen "127.0.0.1:$img_port")
(cd "$img" && exec "${clean_env[@]}" "${image_env[@]}" "MODELGATE_TOKENS=[{name: demo, sha256: '$hash', scopes: [query]}]" \
  "$bin" "${served_cmd[@]}") >"$work/image-serve.log" 2>&1 &
pid=$!
url="http://127.0.0.1:$img_port"
wait_http "$url/readyz" "$pid" "$work/image-serve.log"
body='{"dataframe_split": {"columns": ["CustomerID", "TransactionTimestamp", "Product", "Amount"], "data": [[1240, "2026-11-22T10:19:05.123Z", "Product A", 132.75]]}}'
expect_http 200 GET "$url/livez" -- "image with MODELGATE_TOKENS: HEALTHCHECK's /livez, no token"
expect_http 401 POST "$url/serving-endpoints/transactions/invocations" "" "$body" -- "image with MODELGATE_TOKENS: demo scoring without a token"
expect_http 200 POST "$url/serving-endpoints/transactions/invocations" "$token" "$body" -- "image with MODELGATE_TOKENS: demo scoring with the token"
stop
config_arg="$(grep -A1 -x -- "--config" "$work/image/cmd" | tail -1)"
(cd "$img" && "${clean_env[@]}" "${image_env[@]}" MODELGATE__SERVER__LISTEN="$image_listen" \
  MODELGATE__AUTH__ENABLED=false MODELGATE__AUTH__ALLOW_ANONYMOUS=true \
  "$bin" check-config --config "$config_arg" >"$work/image-anon.out" 2>"$work/image-anon.err") \
  || { cat "$work/image-anon.err" >&2; fail "image: the demo opt-in of docs/docker.md (auth off, allow_anonymous) is refused"; }
ok "image: the demo opt-in (MODELGATE__AUTH__ENABLED=false MODELGATE__AUTH__ALLOW_ANONYMOUS=true) passes check-config on $image_listen"
(cd "$img" && expect_refusal "image: MODELGATE__AUTH__ENABLED=false alone on $image_listen" "$work/image-off.err" "auth.allow_anonymous" 2 -- \
  "${clean_env[@]}" "${image_env[@]}" MODELGATE__SERVER__LISTEN="$image_listen" MODELGATE__AUTH__ENABLED=false \
  "$bin" check-config --config "$config_arg")
echo "closed deployment: all checks passed"
