{{- define "modelgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modelgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "modelgate.labels" -}}
helm.sh/chart: {{ include "modelgate.chart" . }}
{{ include "modelgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "modelgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secret holding tokens.yaml, and its key. */}}
{{- define "modelgate.tokensSecretName" -}}
{{- default (printf "%s-tokens" (include "modelgate.fullname" .)) .Values.auth.existingSecret }}
{{- end }}
{{- define "modelgate.tokensSecretKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}tokens.yaml{{ end }}
{{- end }}

{{/* The admin listener, HOST:PORT (an IPv6 address in brackets). */}}
{{- define "modelgate.adminListen" -}}
{{- $addr := toString .Values.admin.address }}
{{- if not (regexMatch "^([0-9]{1,3}(\\.[0-9]{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)$" $addr) }}
{{- fail (printf "admin.address must be an IP address (127.0.0.1, ::1, 0.0.0.0, ::), not %q" $addr) }}
{{- end }}
{{- if contains ":" $addr }}[{{ $addr }}]:{{ .Values.admin.port }}{{ else }}{{ $addr }}:{{ .Values.admin.port }}{{ end }}
{{- end }}

{{/* "true" when the admin listener is reachable from outside the pod (not a loopback address). */}}
{{- define "modelgate.adminExposed" -}}
{{- $addr := toString .Values.admin.address }}
{{- if not (or (hasPrefix "127." $addr) (eq $addr "::1")) }}true{{ end }}
{{- end }}

{{/*
The gateway config: config from values, with the keys the chart owns set here.
*/}}
{{- define "modelgate.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $reg := $cfg.registry | default dict }}
{{- if eq (toString $reg.kind) "mlflow" }}
{{- if not $reg.uri }}{{ fail "config.registry.uri (the MLflow tracking server) is required with config.registry.kind: mlflow" }}{{ end }}
{{- if not (hasKey $reg "cache_dir") }}{{ $_ := set $reg "cache_dir" "/var/lib/modelgate/mlflow-cache" }}{{ end }}
{{- else if ne (toString $reg.kind) "file" }}
{{- fail (printf "config.registry.kind must be file or mlflow, not %v" $reg.kind) }}
{{- end }}
{{- $_ := set $cfg "registry" $reg }}
{{- /* Promotion decides on one process's labels: one decider only (docs/promotion.md). */}}
{{- $replicas := .Values.replicaCount | int }}
{{- if or .Values.autoscaling.enabled (gt $replicas 1) }}
{{- range $i, $ep := ($cfg.endpoints | default list) }}
{{- if and $ep.promotion (not $ep.promotion.dry_run) }}
{{- fail (printf "config.endpoints[%d].promotion: promotion decisions are made per replica, on that replica's own counts, so with replicaCount %d (or autoscaling) each replica could move the alias by itself: there is no single decider across replicas yet. Set replicaCount=1 (autoscaling off), or promotion dry_run: true (docs/promotion.md)" $i $replicas) }}
{{- end }}
{{- end }}
{{- end }}
{{- /* Replicas share endpoint configs and rate-limit counts through Redis (docs/operations.md). */}}
{{- $fleet := $cfg.fleet | default dict }}
{{- if and (or .Values.autoscaling.enabled (gt $replicas 1)) (not $fleet.redis_url) (not .Values.secretEnv.fleetRedisUrlSecret.name) }}
{{- $many := ternary (printf "autoscaling (up to %v replicas)" .Values.autoscaling.maxReplicas) (printf "replicaCount %d" $replicas) .Values.autoscaling.enabled }}
{{- fail (printf "%s needs the fleet's shared store: without it each replica keeps its own endpoint configs (an endpoint created or changed through one pod would be unknown to the others) and its own rate-limit counts. Set config.fleet.redis_url or secretEnv.fleetRedisUrlSecret to a Redis every replica reaches, or replicaCount=1 with autoscaling off (docs/operations.md, Scaling out)" $many) }}
{{- end }}
{{- $feat := $cfg.features | default dict }}
{{- if eq (toString $feat.store) "redis" }}
{{- if and (not (($feat.redis | default dict).url)) (not .Values.secretEnv.redisUrlSecret.name) }}
{{- fail "features.store redis needs config.features.redis.url or secretEnv.redisUrlSecret" }}
{{- end }}
{{- end }}
{{- $auth := dict "enabled" .Values.auth.enabled "allow_anonymous" .Values.auth.allowAnonymous "open_health" .Values.auth.open_health "open_metrics" .Values.auth.open_metrics }}
{{- if .Values.auth.enabled }}
{{- if and (not .Values.auth.tokens) (not .Values.auth.existingSecret) }}
{{- fail "auth: closed by default, and no token lets a caller in. Give auth.tokens (SHA-256 hashes, never tokens: TOKEN=$(openssl rand -hex 32); printf %s \"$TOKEN\" | sha256sum; then --set 'auth.tokens[0].name=admin,auth.tokens[0].sha256=<hash>,auth.tokens[0].scopes={query,manage}') or auth.existingSecret (a Secret holding tokens.yaml); or, for an open deployment, auth.enabled=false with auth.allowAnonymous=true" }}
{{- end }}
{{- $_ := set $auth "tokens_file" (printf "/etc/modelgate-tokens/%s" (include "modelgate.tokensSecretKey" .)) }}
{{- else if not .Values.auth.allowAnonymous }}
{{- fail "auth.enabled is false: scoring, and the admin API wherever it listens, would answer anyone who reaches them, with no token. Set auth.allowAnonymous=true to deploy it open anyway, or keep auth.enabled with auth.tokens or auth.existingSecret" }}
{{- end }}
{{- $_ := set $cfg "auth" $auth }}
{{- $server := $cfg.server | default dict }}
{{- $_ := set $server "listen" (printf "0.0.0.0:%v" .Values.containerPort) }}
{{- $_ := set $server "admin_listen" (include "modelgate.adminListen" .) }}
{{- if .Values.grpc.enabled }}
{{- $_ := set $server "grpc_listen" (printf "0.0.0.0:%v" .Values.grpc.port) }}
{{- end }}
{{- $_ := set $cfg "server" $server }}
{{- $_ := set $cfg "control" (dict "state_file" "/var/lib/modelgate/endpoints.json") }}
{{- if .Values.tls.enabled }}
{{- $_ := set $server "tls" (dict "cert_file" "/etc/modelgate-tls/tls.crt" "key_file" "/etc/modelgate-tls/tls.key") }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* Seconds the drain may take: preStop + server shutdown + inference-log flush + span
export (an export under way, then the flush: twice tracing.export_timeout_ms) + margin. */}}
{{- define "modelgate.terminationGracePeriod" -}}
{{- $server := .Values.config.server | default dict }}
{{- $log := .Values.config.inference_log | default dict }}
{{- $tracing := .Values.config.tracing | default dict }}
{{- $shutdown := int (default 30 $server.shutdown_timeout_seconds) }}
{{- $flush := int (default 10 $log.shutdown_deadline_seconds) }}
{{- $spans := 0 }}
{{- if $tracing.enabled }}
{{- $spans = mul 2 (div (add (int (default 10000 $tracing.export_timeout_ms)) 999) 1000) }}
{{- end }}
{{- add (int .Values.preStopSleepSeconds) $shutdown $flush $spans (int .Values.terminationGraceExtraSeconds) }}
{{- end }}
