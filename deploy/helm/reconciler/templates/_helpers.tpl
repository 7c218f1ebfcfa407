{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "reconciler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, unless it does not contain the chart name. */}}
{{- define "reconciler.fullname" -}}
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

{{/* A shard's Deployment: the full name, then -<shard> (nothing for the unsharded one). */}}
{{- define "reconciler.shardFullname" -}}
{{- if .shard }}
{{- printf "%s-%s" (include "reconciler.fullname" .root) .shard | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "reconciler.fullname" .root }}
{{- end }}
{{- end }}

{{/* Kopf peering names: "reconciler", or one per shard (shards must never pause each other). */}}
{{- define "reconciler.peeringNames" -}}
{{- if .Values.shards }}
{{- range .Values.shards }}
- {{ printf "reconciler-%s" .name }}
{{- end }}
{{- else }}
- reconciler
{{- end }}
{{- end }}

{{- define "reconciler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "reconciler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reconciler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "reconciler.labels" -}}
helm.sh/chart: {{ include "reconciler.chart" . }}
{{ include "reconciler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: reconciler
{{- end }}

{{- define "reconciler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "reconciler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "reconciler.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Peering: more than one replica. Then the operator runs without --standalone. */}}
{{- define "reconciler.peering" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/* Deploy the in-chart Valkey: no external URL and valkey.enabled. */}}
{{- define "reconciler.valkeyDeployed" -}}
{{- if and (not .Values.valkey.url) .Values.valkey.enabled }}true{{ end }}
{{- end }}

{{- define "reconciler.valkeyFullname" -}}
{{- printf "%s-valkey" (include "reconciler.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "reconciler.valkeySelectorLabels" -}}
app.kubernetes.io/name: valkey
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "reconciler.valkeyLabels" -}}
helm.sh/chart: {{ include "reconciler.chart" . }}
{{ include "reconciler.valkeySelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.valkey.image.tag | quote }}
app.kubernetes.io/component: cache
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: reconciler
{{- end }}

{{/* RECONCILER_VALKEY_URL: the external URL, or the in-chart Valkey Service (no password in it). */}}
{{- define "reconciler.valkeyUrl" -}}
{{- if .Values.valkey.url }}
{{- .Values.valkey.url }}
{{- else if .Values.valkey.enabled }}
{{- printf "valkey://%s.%s.svc:6379/0" (include "reconciler.valkeyFullname" .) .Release.Namespace }}
{{- else }}
{{- fail "set valkey.url to an existing Valkey, or valkey.enabled=true to deploy one" }}
{{- end }}
{{- end }}

{{/* The Secret holding Valkey's password: the user's, or the one the chart generates for its Valkey. */}}
{{- define "reconciler.valkeyAuthSecret" -}}
{{- if .Values.valkey.auth.existingSecret }}
{{- .Values.valkey.auth.existingSecret }}
{{- else if include "reconciler.valkeyDeployed" . }}
{{- include "reconciler.valkeyFullname" . }}
{{- end }}
{{- end }}

{{/* The key of that Secret. */}}
{{- define "reconciler.valkeyAuthKey" -}}
{{- if .Values.valkey.auth.existingSecret }}{{ .Values.valkey.auth.key }}{{ else }}password{{ end }}
{{- end }}

{{/* RECONCILER_API_AUTH: the value, else token with a token Secret, else kubernetes. */}}
{{- define "reconciler.apiAuth" -}}
{{- if .Values.api.auth }}{{ .Values.api.auth }}
{{- else if .Values.api.token.existingSecret }}token
{{- else }}kubernetes
{{- end }}
{{- end }}

{{/* Environment of both containers. */}}
{{- define "reconciler.commonEnv" -}}
{{- with include "reconciler.valkeyAuthSecret" . }}
- name: RECONCILER_VALKEY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ include "reconciler.valkeyAuthKey" $ }}
{{- end }}
- name: RECONCILER_VALKEY_URL
  value: {{ include "reconciler.valkeyUrl" . | quote }}
{{- if and .Values.valkey.url .Values.valkey.tls.caSecret }}
- name: RECONCILER_VALKEY_CA_FILE
  value: {{ printf "/etc/reconciler/valkey-ca/%s" .Values.valkey.tls.caKey | quote }}
{{- end }}
- name: RECONCILER_MAX_WORKERS
  value: {{ .Values.maxWorkers | quote }}
- name: RECONCILER_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: RECONCILER_RUNTIME_DIR
  value: /tmp/reconciler
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Hardened container securityContext (the pod runs as uid 10001). */}}
{{- define "reconciler.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/* Rules the operator needs where it watches Reconciles (ClusterRole or one Role per namespace);
files/operator-rbac.yaml holds every rule, and says why each is needed. */}}
{{- define "reconciler.namespacedRules" -}}
{{- toYaml (.Files.Get "files/operator-rbac.yaml" | fromYaml).namespaced }}
{{- end }}

{{/* One list of files/operator-rbac.yaml: cluster, clusterPeering or namespacedPeering. */}}
{{- define "reconciler.rbacRules" -}}
{{- $rules := .root.Files.Get "files/operator-rbac.yaml" | fromYaml }}
{{- toYaml (index $rules .list) }}
{{- end }}
