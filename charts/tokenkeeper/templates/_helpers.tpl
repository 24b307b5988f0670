{{- define "tokenkeeper.labels" -}}
app.kubernetes.io/name: tokenkeeper
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "tokenkeeper.selector" -}}
app.kubernetes.io/name: tokenkeeper
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
