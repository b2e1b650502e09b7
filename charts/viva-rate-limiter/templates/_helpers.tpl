{{/* Names and labels. */}}
{{- define "viva-ratelimit.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "viva-ratelimit.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "viva-ratelimit.labels" -}}
{{ include "viva-ratelimit.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "viva-ratelimit.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The Secret holding REDIS_AUTH, or "" when Redis has no password. */}}
{{- define "viva-ratelimit.redisSecret" -}}
{{- if .Values.redis.auth.existingSecret -}}
{{- .Values.redis.auth.existingSecret -}}
{{- else if .Values.redis.auth.password -}}
{{- printf "%s-redis" (include "viva-ratelimit.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The rules' domains, to check the EnvoyFilter's domain against them. */}}
{{- define "viva-ratelimit.domains" -}}
{{- range .Values.rules -}}
{{- $content := .content -}}
{{- if kindIs "string" $content -}}{{- $content = fromYaml $content -}}{{- end -}}
{{- printf "%v\n" (get $content "domain") -}}
{{- end -}}
{{- end -}}

{{/*
The rate-limit container, as an item of a containers list. The same in both modes, except
that in sidecar mode the gRPC port listens on loopback only (just the pod's own istio-proxy
calls it).
*/}}
{{- define "viva-ratelimit.container" -}}
- name: viva-ratelimit
  image: {{ include "viva-ratelimit.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["serve"]
  env:
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
    {{- if eq .Values.mode "sidecar" }}
    - name: GRPC_HOST
      value: 127.0.0.1
    {{- end }}
    {{- if .Values.redis.enabled }}
    - name: BACKEND_TYPE
      value: redis
    - name: REDIS_TYPE
      value: {{ .Values.redis.type | quote }}
    - name: REDIS_URL
      value: {{ .Values.redis.url | quote }}
    - name: REDIS_TLS
      value: {{ .Values.redis.tls | quote }}
    - name: REDIS_TIMEOUT
      value: {{ .Values.redis.timeout | quote }}
    - name: REDIS_POOL_SIZE
      value: {{ .Values.redis.poolSize | quote }}
    {{- with include "viva-ratelimit.redisSecret" . }}
    - name: REDIS_AUTH
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: {{ $.Values.redis.auth.secretKey }}
    {{- end }}
    {{- else }}
    - name: BACKEND_TYPE
      value: memory
    {{- end }}
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

{{- define "viva-ratelimit.rulesVolume" -}}
- name: viva-ratelimit-rules
  configMap:
    name: {{ include "viva-ratelimit.fullname" . }}-rules
{{- end -}}
