{{/*
The name of the injector's objects: fullnameOverride, else the release's
name when it contains "kong-metrics", else "<release>-kong-metrics-sidecar".
*/}}
{{- define "kms.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "kong-metrics" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels of every object the chart creates. */}}
{{- define "kms.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: kong-metrics-sidecar
{{- with .Values.extraLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* What selects the injector's pods. */}}
{{- define "kms.selectorLabels" -}}
app.kubernetes.io/name: kong-metrics-injector
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The labels of the injector's objects. */}}
{{- define "kms.injectorLabels" -}}
app.kubernetes.io/name: kong-metrics-injector
{{ include "kms.labels" . }}
{{- end -}}

{{/* The labels of the objects in the Kong namespaces (the sidecar's). */}}
{{- define "kms.sidecarLabels" -}}
app.kubernetes.io/name: kong-metrics-sidecar
{{ include "kms.labels" . }}
{{- end -}}

{{- define "kms.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kms.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The injector's image: image.tag defaults to the chart's appVersion. */}}
{{- define "kms.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The sidecar's image: each part defaults to the injector's. */}}
{{- define "kms.sidecarImage" -}}
{{- $repository := default .Values.image.repository .Values.sidecar.image.repository -}}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.sidecar.image.tag -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}

{{/* The Secret holding the webhook's serving certificate. */}}
{{- define "kms.tlsSecretName" -}}
{{- if .Values.certManager.enabled -}}
{{- printf "%s-tls" (include "kms.fullname" .) -}}
{{- else -}}
{{- printf "%s-selfsigned-tls" (include "kms.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The names the API server dials: <service>.<namespace>.svc. */}}
{{- define "kms.dnsNames" -}}
{{- $svc := printf "%s.%s.svc" (include "kms.fullname" .) .Release.Namespace -}}
{{- list $svc (printf "%s.cluster.local" $svc) | toJson -}}
{{- end -}}

{{/* A monitor endpoint's scrape settings, from serviceMonitor or podMonitor. */}}
{{- define "kms.endpoint" -}}
{{- with .interval }}
interval: {{ . }}
{{- end }}
{{- with .scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
honorLabels: {{ .honorLabels }}
{{- with .metricRelabelings }}
metricRelabelings:
{{- toYaml . | nindent 0 }}
{{- end }}
{{- with .relabelings }}
relabelings:
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end -}}
