{{/* Names and labels. */}}
{{- define "viva-rate-limiter.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "viva-rate-limiter.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "viva-rate-limiter.labels" -}}
{{ include "viva-rate-limiter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "viva-rate-limiter.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
"true" when an `enabled: true | false | auto` value is on; auto: when the cluster serves the
API named by group/version/Kind. Called with (list <value> <api> $).
*/}}
{{- define "viva-rate-limiter.on" -}}
{{- $enabled := index . 0 -}}
{{- $root := index . 2 -}}
{{- if eq (toString $enabled) "auto" -}}
{{- if $root.Capabilities.APIVersions.Has (index . 1) -}}true{{- end -}}
{{- else if $enabled -}}true{{- end -}}
{{- end -}}

{{/* Combinations the schema cannot express; included by the always-rendered ConfigMap. */}}
{{- define "viva-rate-limiter.validate" -}}
{{- if and (eq .Values.mode "full") (eq .Values.placement "sidecar") -}}
{{- fail "mode=full needs placement=service: the dashboard, portal and key API are served by the shared Deployment, not from each workload pod" -}}
{{- end -}}
{{- if and .Values.redis.enabled .Values.redis.cluster.enabled -}}
{{- fail "redis.enabled and redis.cluster.enabled are both true: choose redis.enabled (a Redis at redis.url) or redis.cluster.enabled (a Redis Cluster: redis.cluster.nodes, or one deployed in the release)" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (eq .Values.placement "sidecar") (not .Values.workload.create) -}}
{{- fail "autoscaling.enabled with placement=sidecar needs workload.create=true: the chart can only scale a Deployment it renders" -}}
{{- end -}}
{{- if lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas) -}}
{{- fail (printf "autoscaling.maxReplicas %v is below autoscaling.minReplicas %v" .Values.autoscaling.maxReplicas .Values.autoscaling.minReplicas) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding REDIS_AUTH, or "" when Redis has no password. */}}
{{- define "viva-rate-limiter.redisSecret" -}}
{{- if .Values.redis.auth.existingSecret -}}
{{- .Values.redis.auth.existingSecret -}}
{{- else if .Values.redis.auth.password -}}
{{- printf "%s-redis" (include "viva-rate-limiter.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding VIVA_DATABASE_URL (full mode). */}}
{{- define "viva-rate-limiter.databaseSecret" -}}
{{- .Values.database.existingSecret | default (printf "%s-database" (include "viva-rate-limiter.fullname" .)) -}}
{{- end -}}

{{/* The in-release Redis Cluster: its name, and whether the chart deploys it. */}}
{{- define "viva-rate-limiter.redisCluster" -}}
{{- printf "%s-redis-cluster" (include "viva-rate-limiter.fullname" .) | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "viva-rate-limiter.deploysRedisCluster" -}}
{{- if and .Values.redis.cluster.enabled (not .Values.redis.cluster.nodes) -}}true{{- end -}}
{{- end -}}

{{- define "viva-rate-limiter.redisClusterSize" -}}
{{- mul .Values.redis.cluster.masters (add 1 .Values.redis.cluster.replicasPerMaster) -}}
{{- end -}}

{{/*
Every node of the cluster as host:port, comma-separated (REDIS_URL with REDIS_TYPE=cluster):
redis.cluster.nodes, or the in-release StatefulSet's stable names through its headless Service.
*/}}
{{- define "viva-rate-limiter.redisClusterNodes" -}}
{{- if .Values.redis.cluster.nodes -}}
{{- join "," .Values.redis.cluster.nodes -}}
{{- else -}}
{{- $name := include "viva-rate-limiter.redisCluster" . -}}
{{- $nodes := list -}}
{{- range $i := until (int (include "viva-rate-limiter.redisClusterSize" .)) -}}
{{- $nodes = append $nodes (printf "%s-%d.%s-headless.%s.svc.cluster.local:6379" $name $i $name $.Release.Namespace) -}}
{{- end -}}
{{- join "," $nodes -}}
{{- end -}}
{{- end -}}

{{/* The rules' domains, to check the EnvoyFilter's domain against them. */}}
{{- define "viva-rate-limiter.domains" -}}
{{- range .Values.rules -}}
{{- $content := .content -}}
{{- if kindIs "string" $content -}}{{- $content = fromYaml $content -}}{{- end -}}
{{- printf "%v\n" (get $content "domain") -}}
{{- end -}}
{{- end -}}

{{/* The counter store's variables: an external Redis, a Redis Cluster, or memory. */}}
{{- define "viva-rate-limiter.storeEnv" -}}
{{- $redis := .Values.redis -}}
{{- if or $redis.enabled $redis.cluster.enabled }}
- name: BACKEND_TYPE
  value: redis
{{- if $redis.cluster.enabled }}
- name: REDIS_TYPE
  value: cluster
- name: REDIS_URL
  value: {{ include "viva-rate-limiter.redisClusterNodes" . | quote }}
{{- else }}
- name: REDIS_TYPE
  value: {{ $redis.type | quote }}
- name: REDIS_URL
  value: {{ $redis.url | quote }}
{{- end }}
- name: REDIS_TLS
  value: {{ $redis.tls | quote }}
- name: REDIS_TIMEOUT
  value: {{ $redis.timeout | quote }}
- name: REDIS_POOL_SIZE
  value: {{ $redis.poolSize | quote }}
{{- with include "viva-rate-limiter.redisSecret" . }}
- name: REDIS_AUTH
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $redis.auth.secretKey }}
{{- end }}
{{- else }}
- name: BACKEND_TYPE
  value: memory
{{- end }}
{{- end -}}

{{/*
The rate-limit container, as an item of a containers list. The same with either placement,
except that in a sidecar the gRPC port listens on loopback only (just the pod's own
istio-proxy calls it).
*/}}
{{- define "viva-rate-limiter.container" -}}
- name: viva-ratelimit
  image: {{ include "viva-rate-limiter.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["serve"]
  env:
    - name: VIVA_MODE
      value: {{ .Values.mode | quote }}
    {{- if eq .Values.mode "full" }}
    - name: VIVA_DATABASE_URL
      valueFrom:
        secretKeyRef:
          name: {{ include "viva-rate-limiter.databaseSecret" . }}
          key: {{ .Values.database.secretKey }}
    {{- with .Values.webhooks.existingSecret }}
    - name: VIVA_SECRET_KEY
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: {{ $.Values.webhooks.secretKey }}
    {{- end }}
    {{- end }}
    - name: VIVA_CONFIG_DIR
      value: /etc/viva-ratelimit/config
    - name: RUNTIME_IGNOREDOTFILES
      value: "true"
    - name: PORT
      value: {{ .Values.ports.http | quote }}
    - name: GRPC_PORT
      value: {{ .Values.ports.grpc | quote }}
    - name: DEBUG_PORT
      value: {{ .Values.ports.debug | quote }}
    {{- if eq .Values.placement "sidecar" }}
    - name: GRPC_HOST
      value: 127.0.0.1
    {{- end }}
    {{- include "viva-rate-limiter.storeEnv" . | trim | nindent 4 }}
    {{- range $name, $value := .Values.env }}
    - name: {{ $name }}
      value: {{ $value | toString | quote }}
    {{- end }}
  ports:
    - name: rl-http
      containerPort: {{ .Values.ports.http }}
    - name: rl-grpc
      containerPort: {{ .Values.ports.grpc }}
    - name: rl-debug
      containerPort: {{ .Values.ports.debug }}
  {{- with .Values.probes.readiness }}
  {{- if .enabled }}
  readinessProbe:
    httpGet:
      path: /healthcheck
      port: rl-http
    periodSeconds: {{ .periodSeconds }}
    failureThreshold: {{ .failureThreshold }}
  {{- end }}
  {{- end }}
  {{- with .Values.probes.liveness }}
  {{- if .enabled }}
  livenessProbe:
    httpGet:
      path: /
      port: rl-debug
    initialDelaySeconds: 5
    periodSeconds: {{ .periodSeconds }}
    failureThreshold: {{ .failureThreshold }}
  {{- end }}
  {{- end }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
  volumeMounts:
    # The whole ConfigMap as a directory, never subPath: kubelet swaps its ..data symlink on
    # update and the sidecar reloads; a subPath mount would never change.
    - name: viva-ratelimit-rules
      mountPath: /etc/viva-ratelimit/config
      readOnly: true
{{- end -}}

{{- define "viva-rate-limiter.rulesVolume" -}}
- name: viva-ratelimit-rules
  configMap:
    name: {{ include "viva-rate-limiter.fullname" . }}-rules
{{- end -}}

{{/* The Deployment holding the rate-limit container: the chart's own, or the workload. */}}
{{- define "viva-rate-limiter.deploymentName" -}}
{{- if eq .Values.placement "service" -}}
{{- include "viva-rate-limiter.fullname" . -}}
{{- else -}}
{{- .Values.workload.name -}}
{{- end -}}
{{- end -}}

{{/* Prometheus' job label of the scraped pods (ServiceMonitor: the Service's name;
PodMonitor: <namespace>/<PodMonitor name>). */}}
{{- define "viva-rate-limiter.job" -}}
{{- if eq .Values.placement "service" -}}
{{- include "viva-rate-limiter.fullname" . -}}
{{- else -}}
{{- printf "%s/%s" .Release.Namespace (include "viva-rate-limiter.fullname" .) -}}
{{- end -}}
{{- end -}}
