{{/* Names, labels and the operator's command line: defined once, used by every template. */}}

{{- define "flaskops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flaskops.fullname" -}}
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

{{- define "flaskops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "flaskops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flaskops
{{- end }}

{{- define "flaskops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flaskops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flaskops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flaskops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "flaskops.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "flaskops.webhookService" -}}
{{- printf "%s-webhook" (include "flaskops.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flaskops.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "flaskops.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The webhook path is kopf's handler id (handlers.py: id="validate-flaskapp"). */}}
{{- define "flaskops.webhookPath" -}}
/validate-flaskapp
{{- end }}

{{/*
The operator's command line. The Dockerfile's `operator` target has the same ENTRYPOINT and CMD, and the
end-to-end tests run this exact list (tests/chart/test_command.py checks all three agree).
*/}}
{{- define "flaskops.command" -}}
- python
- -m
- flaskops
{{- end }}

{{- define "flaskops.args" -}}
- --liveness=http://0.0.0.0:{{ .Values.operator.healthPort }}/healthz
{{- with .Values.operator.watchNamespace }}
- --namespace={{ . }}
{{- end }}
{{- end }}

{{/* The namespace whose FlaskApps the operator watches, or "" for all. */}}
{{- define "flaskops.namespaced" -}}
{{- if .Values.operator.watchNamespace }}true{{ end }}
{{- end }}
