{{/* The release's name for its objects: RELEASE-berth, at most 63 characters. */}}
{{- define "berth.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "berth.labels" -}}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The Secret holding the admin password (key admin-password). */}}
{{- define "berth.adminSecret" -}}
{{- .Values.existingSecret | default (include "berth.fullname" .) -}}
{{- end -}}

{{/* Whether the metadata is in PostgreSQL and the blobs in S3. */}}
{{- define "berth.scaleOut" -}}
{{- if and (or .Values.database.url .Values.database.existingSecret) .Values.s3.bucket -}}true{{- end -}}
{{- end -}}

{{/* The chart's Secret is needed for anything it keeps. */}}
{{- define "berth.ownSecret" -}}
{{- if or (not .Values.existingSecret) (and .Values.database.url (not .Values.database.existingSecret)) (and .Values.s3.accessKeyId (not .Values.s3.existingSecret)) -}}true{{- end -}}
{{- end -}}
