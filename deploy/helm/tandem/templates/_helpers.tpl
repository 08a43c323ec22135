{{/* Names and labels. */}}
{{- define "tandem.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tandem.fullname" -}}
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

{{- define "tandem.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tandem.labels" -}}
helm.sh/chart: {{ include "tandem.chart" . }}
app.kubernetes.io/name: {{ include "tandem.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tandem
{{- end }}

{{/* Selector labels of one component: gateway, vllm or redis. */}}
{{- define "tandem.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tandem.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "tandem.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tandem.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tandem.image" -}}
{{- $tag := .Values.image.tag | default (printf "%s-%s" .Chart.AppVersion .Values.image.variant) }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{/* The Secret holding the API keys: the operator's, or the one this chart creates, or none. */}}
{{- define "tandem.apiKeysSecret" -}}
{{- if .Values.apiKeys.secretName }}
{{- .Values.apiKeys.secretName }}
{{- else if .Values.apiKeys.values }}
{{- printf "%s-api-keys" (include "tandem.fullname" .) }}
{{- end }}
{{- end }}

{{- define "tandem.apiKeysFile" -}}
/run/secrets/tandem/api-keys
{{- end }}

{{- define "tandem.redisName" -}}
{{- printf "%s-redis" (include "tandem.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tandem.vllmName" -}}
{{- printf "%s-vllm" (include "tandem.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tandem.vllmRouterName" -}}
{{- printf "%s-vllm-router" (include "tandem.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* host:port of the large model: vllm-router when it is on, else vLLM's own Service. */}}
{{- define "tandem.vllmEndpoint" -}}
{{- if .Values.vllm.router.enabled }}
{{- printf "%s:%v" (include "tandem.vllmRouterName" .) .Values.vllm.router.port }}
{{- else }}
{{- printf "%s:%v" (include "tandem.vllmName" .) .Values.vllm.port }}
{{- end }}
{{- end }}

{{/* SIGTERM -> preStop sleep -> drain streams for shutdownGraceSeconds -> exit. */}}
{{- define "tandem.terminationGracePeriodSeconds" -}}
{{- $drain := add (int .Values.preStopSleepSeconds) (int (ceil .Values.config.shutdownGraceSeconds)) }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $drain 15 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) (int $drain) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be larger than preStopSleepSeconds + config.shutdownGraceSeconds (%v), or running streams are cut" .Values.terminationGracePeriodSeconds $drain) }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{- define "tandem.validate" -}}
{{- if and .Values.redis.external.secretName .Values.redis.bundled.enabled }}
{{- fail "redis: set either external.secretName or bundled.enabled, not both" }}
{{- end }}
{{- if and .Values.config.metricsRequireAuth .Values.serviceMonitor.enabled (not .Values.serviceMonitor.authorization.secretName) }}
{{- fail "serviceMonitor: config.metricsRequireAuth is on, so set serviceMonitor.authorization.secretName and secretKey" }}
{{- end }}
{{- if and (not (include "tandem.apiKeysSecret" .)) (not .Values.apiKeys.allowUnauthenticated) }}
{{- fail "apiKeys: set apiKeys.secretName (or apiKeys.values), or apiKeys.allowUnauthenticated=true to serve without keys" }}
{{- end }}
{{- end }}

{{/* The catalog served: the values' one (through tpl), or the built-in echo model. */}}
{{- define "tandem.catalog" -}}
{{- if .Values.catalog }}
{{- tpl (toYaml .Values.catalog) . }}
{{- else }}
backends:
  echo:
    kind: echo
models:
  echo:
    policy: direct
    backends: {main: echo}
    description: Built-in fake model that repeats the last user message, word by word.
{{- end }}
{{- end }}
