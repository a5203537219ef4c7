{{/* Names ------------------------------------------------------------------------------- */}}
{{- define "ragway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ragway.fullname" -}}
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

{{/* "<fullname>-<component>", e.g. ragway-model. Call with (dict "root" $ "component" "model"). */}}
{{- define "ragway.componentName" -}}
{{- printf "%s-%s" (include "ragway.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ragway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels ------------------------------------------------------------------------------ */}}
{{- define "ragway.labels" -}}
helm.sh/chart: {{ include "ragway.chart" .root }}
{{ include "ragway.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: ragway
{{- end }}

{{- define "ragway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ragway.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "ragway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ragway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ragway.secretName" -}}
{{- default (include "ragway.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* "registry/repository:tag" for a component. Call with (dict "root" $ "image" .Values.model.image). */}}
{{- define "ragway.image" -}}
{{- $tag := .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- printf "%s%s:%s" .root.Values.image.registry .image.repository (toString $tag) }}
{{- end }}

{{/* Where state lives ------------------------------------------------------------------- */}}
{{/* "true" when the gateway keeps its database in SQLite on its own volume. */}}
{{- define "ragway.gateway.embedded" -}}
{{- if eq .Values.database.type "sqlite" }}true{{- end }}
{{- end }}

{{/* "true" when the retrieval service keeps vectors in an embedded store on its own volume. */}}
{{- define "ragway.retrieval.embedded" -}}
{{- if eq .Values.retrieval.backend "milvus" }}
{{- if not .Values.milvus.uri }}true{{- end }}
{{- else }}
{{- if not .Values.qdrant.url }}true{{- end }}
{{- end }}
{{- end }}

{{/* Shared pod pieces ------------------------------------------------------------------- */}}
{{- define "ragway.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "ragway.containerSecurityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}

{{/* Writable scratch space for a read-only root filesystem: /tmp and the user's home (caches). */}}
{{- define "ragway.scratchVolumes" -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- end }}

{{- define "ragway.scratchVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/ragway
{{- end }}
