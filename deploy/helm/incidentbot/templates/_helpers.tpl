{{/* Chart name, overridable. */}}
{{- define "incidentbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects; "incidentbot" for a release of that name. */}}
{{- define "incidentbot.fullname" -}}
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

{{/* Common labels. */}}
{{- define "incidentbot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "incidentbot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels; app.kubernetes.io/name is also the Prometheus job label. */}}
{{- define "incidentbot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "incidentbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Service account name. */}}
{{- define "incidentbot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "incidentbot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* True (non-empty) when the embedded NATS server is used. */}}
{{- define "incidentbot.embeddedBus" -}}
{{- if not .Values.config.bus.url }}true{{ end }}
{{- end }}

{{/* The Secret holding the bot's secrets: the chart's own with secrets.create, else secrets.existingSecret. */}}
{{- define "incidentbot.secretName" -}}
{{- if .Values.secrets.create }}{{ include "incidentbot.fullname" . }}-secrets{{ else }}{{ .Values.secrets.existingSecret }}{{ end }}
{{- end }}

{{/* The Secret of PagerDuty routing keys by name; empty when none. */}}
{{- define "incidentbot.routingKeysSecret" -}}
{{- if .Values.pagerdutyRoutingKeys.create }}{{ include "incidentbot.fullname" . }}-pagerduty-routing-keys{{ else }}{{ .Values.pagerdutyRoutingKeys.existingSecret }}{{ end }}
{{- end }}

{{/* The Secret of the webhook action's header secrets; empty when none. */}}
{{- define "incidentbot.webhookSecret" -}}
{{- if .Values.webhookSecrets.create }}{{ include "incidentbot.fullname" . }}-webhook-secrets{{ else }}{{ .Values.webhookSecrets.existingSecret }}{{ end }}
{{- end }}

