{{- define "gatewayd.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gatewayd.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gatewayd.labels" -}}
app.kubernetes.io/name: {{ include "gatewayd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "gatewayd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatewayd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gatewayd.tlsSecret" -}}
{{- if .Values.tls.existingSecret -}}{{ .Values.tls.existingSecret }}{{- else -}}{{ include "gatewayd.fullname" . }}-tls{{- end -}}
{{- end -}}

{{/* The Secret holding auth.toml, or nothing when auth stays in the generated config. */}}
{{- define "gatewayd.authSecret" -}}
{{- if .Values.auth.existingSecret -}}{{ .Values.auth.existingSecret }}{{- else if .Values.auth.config -}}{{ include "gatewayd.fullname" . }}-auth{{- end -}}
{{- end -}}

{{/* The Secret holding the admin token (key `token`). */}}
{{- define "gatewayd.adminSecret" -}}
{{- if .Values.admin.existingSecret -}}{{ .Values.admin.existingSecret }}{{- else -}}{{ include "gatewayd.fullname" . }}-admin{{- end -}}
{{- end -}}

{{/* Refuse a split bus: several pods without a shared cluster backend. */}}
{{- define "gatewayd.validate" -}}
{{- if and (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) (not (has .Values.cluster.backend (list "nats" "redis"))) -}}
{{- fail "replicaCount > 1 or autoscaling.enabled needs cluster.backend = \"nats\" or \"redis\"; otherwise every pod has its own bus and messages do not cross pods" -}}
{{- end -}}
{{- if not (has .Values.cluster.backend (list "single" "nats" "redis")) -}}
{{- fail "cluster.backend must be single, nats or redis" -}}
{{- end -}}
{{- if and (eq .Values.cluster.backend "nats") (empty .Values.cluster.nats.urls) -}}
{{- fail "cluster.backend = \"nats\" needs cluster.nats.urls" -}}
{{- end -}}
{{- if and (eq .Values.cluster.backend "redis") (empty .Values.cluster.redis.urls) -}}
{{- fail "cluster.backend = \"redis\" needs cluster.redis.urls" -}}
{{- end -}}
{{- if and .Values.admin.existingSecret .Values.admin.token -}}
{{- fail "set admin.existingSecret or admin.token, not both" -}}
{{- end -}}
{{- if and .Values.auth.existingSecret .Values.auth.config -}}
{{- fail "set auth.existingSecret or auth.config, not both" -}}
{{- end -}}
{{- if hasKey .Values.auth.files "auth.toml" -}}
{{- fail "auth.files: auth.toml is auth.config's file" -}}
{{- end -}}
{{- if and .Values.auth.files (not .Values.auth.config) -}}
{{- fail "auth.files go into the chart's auth Secret, which needs auth.config (put them into auth.existingSecret instead)" -}}
{{- end -}}
{{- end -}}
