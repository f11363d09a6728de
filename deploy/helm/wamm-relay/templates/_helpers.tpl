{{- define "wamm-relay.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wamm-relay.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wamm-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wamm-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wamm-relay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "wamm-relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "wamm-relay.secretName" -}}
{{- default (include "wamm-relay.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Replicas: 1 for sqlite, 2 for postgres unless set; sqlite cannot scale out. */}}
{{- define "wamm-relay.replicas" -}}
{{- $driver := .Values.store.driver -}}
{{- if not (has $driver (list "sqlite" "postgres")) -}}
{{- fail (printf "store.driver = %q: must be sqlite or postgres" $driver) -}}
{{- end -}}
{{- $default := ternary 2 1 (eq $driver "postgres") -}}
{{- $n := int (default $default .Values.replicaCount) -}}
{{- if and (eq $driver "sqlite") (gt $n 1) -}}
{{- fail (printf "replicaCount = %d: store.driver sqlite runs one replica; use postgres for more" $n) -}}
{{- end -}}
{{- $n -}}
{{- end -}}

{{/* Seconds the pod may take to stop: preStop sleep, the relay's drain_delay,
its shutdown_timeout, and a margin for releasing leases. */}}
{{- define "wamm-relay.terminationGrace" -}}
{{- add (mul 2 (int .Values.server.drainDelaySeconds)) (int .Values.server.shutdownTimeoutSeconds) 10 -}}
{{- end -}}

{{/* A TOML basic string: JSON string escapes are valid TOML. */}}
{{- define "wamm-relay.tomlString" -}}
{{- toJson (toString .) -}}
{{- end -}}
