{{- define "footfall.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "footfall.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selector labels of one component: (dict "ctx" $ "component" "collector") */}}
{{- define "footfall.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "footfall.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "footfall.secretName" -}}
{{ .Values.secrets.existingSecret | default (include "footfall.fullname" .) }}
{{- end -}}

{{/* the environment every footfall process shares */}}
{{- define "footfall.env" -}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: FOOTFALL_TOPIC_PREFIX
  value: {{ .Values.topicPrefix | quote }}
- name: FOOTFALL_PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
- name: FOOTFALL_DATABASE
  value: {{ .Values.clickhouse.database | quote }}
{{- with .Values.clickhouse.cluster }}
- name: FOOTFALL_CLICKHOUSE_CLUSTER
  value: {{ . | quote }}
{{- end }}
- name: CLICKHOUSE_URL
  valueFrom: { secretKeyRef: { name: {{ include "footfall.secretName" . }}, key: CLICKHOUSE_URL } }
- name: FOOTFALL_ADMIN_KEY
  valueFrom: { secretKeyRef: { name: {{ include "footfall.secretName" . }}, key: FOOTFALL_ADMIN_KEY } }
- name: FOOTFALL_WRITE_KEYS
  valueFrom: { secretKeyRef: { name: {{ include "footfall.secretName" . }}, key: FOOTFALL_WRITE_KEYS } }
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "footfall.podSpecCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{ toYaml . | nindent 2 }}
{{- end }}
securityContext: {{ toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity: {{ toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* an HTTP probe: (dict "path" "/healthz" "port" "http") */}}
{{- define "footfall.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
periodSeconds: 10
timeoutSeconds: 3
failureThreshold: 6
{{- end -}}
