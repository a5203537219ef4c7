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

{{/* Models --------------------------------------------------------------------------------- */}}
{{/* The model services to deploy, as a YAML list of {component, servedName, values, entry}: one per
entry of .Values.models (component model-<servedName>, its settings .Values.model overridden by the
entry's), or — with no entries — the one model of .Values.model (component "model", named by its
model service). Read it with (include "ragway.models" . | fromYamlArray). */}}
{{- define "ragway.models" -}}
{{- $out := list }}
{{- range $entry := .Values.models }}
{{- $values := mergeOverwrite (deepCopy $.Values.model) (deepCopy (omit $entry "servedName" "aliases" "prices" "allow" "fallbacks")) }}
{{- $out = append $out (dict "component" (printf "model-%s" $entry.servedName) "servedName" $entry.servedName "values" $values "entry" $entry) }}
{{- else }}
{{- $out = append $out (dict "component" "model" "servedName" "" "values" .Values.model "entry" dict) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* The gateway's model table (RAGWAY_MODELS_FILE) for .Values.models: each model's replicas are
its headless Service, resolved by the gateway's gRPC channel (one address per ready pod). */}}
{{- define "ragway.modelTable" -}}
{{- $fullname := include "ragway.fullname" . }}
{{- $suffix := printf "%s.svc.%s" .Release.Namespace .Values.clusterDomain }}
{{- $models := list }}
{{- range $m := include "ragway.models" . | fromYamlArray }}
{{- $row := dict "name" $m.servedName "replicas" (list (printf "dns:///%s-%s-headless.%s:50051" $fullname $m.component $suffix)) }}
{{- range $key := list "aliases" "prices" "allow" "fallbacks" }}
{{- with index $m.entry $key }}
{{- $_ := set $row $key . }}
{{- end }}
{{- end }}
{{- $models = append $models $row }}
{{- end }}
{{- toYaml (dict "models" $models) }}
{{- end }}
