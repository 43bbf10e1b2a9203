{{/* The image every container runs: image.repository:image.tag, the tag defaulting to appVersion. */}}
{{- define "underpool.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Labels on every object. Pod templates and selectors carry only the name and part-of
labels, as deploy/manifests do, so a kustomize install can be taken over by the chart. */}}
{{- define "underpool.labels" -}}
app.kubernetes.io/part-of: underpool
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "underpool.podLabels" -}}
app.kubernetes.io/name: {{ . }}
app.kubernetes.io/part-of: underpool
{{- end }}
