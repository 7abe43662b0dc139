{{/* A KEDA ScaledObject on a consumer group's lag:
     (dict "ctx" $ "component" "processor" "kind" "StatefulSet" "group" "footfall-processor" "topic" "footfall.raw" "scaling" .Values.processor.autoscaling)
     or, for a component with several consumer groups, "lags" (list (dict "group" ... "topic" ...) ...): one trigger each,
     and KEDA scales on the largest. */}}
{{- /*
     Every scale step rebalances the group, so: no more replicas than partitions (an extra one would sit idle),
     and a long scale-down stabilisation so a dip in traffic does not cost two rebalances. */}}
{{- define "footfall.scaledObject" -}}
{{- $ctx := .ctx -}}
{{- if gt (int .scaling.maxReplicaCount) (int $ctx.Values.kafka.partitions) -}}
{{- fail (printf "%s.autoscaling.maxReplicaCount (%v) must not exceed kafka.partitions (%v): a consumer beyond the partition count gets no partition" .component .scaling.maxReplicaCount $ctx.Values.kafka.partitions) -}}
{{- end -}}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ include "footfall.fullname" $ctx }}-{{ .component }}
  labels: {{- include "footfall.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: {{ .kind }}
    name: {{ include "footfall.fullname" $ctx }}-{{ .component }}
  minReplicaCount: {{ .scaling.minReplicaCount }}
  maxReplicaCount: {{ .scaling.maxReplicaCount }}
  pollingInterval: {{ .scaling.pollingInterval }}
  cooldownPeriod: {{ .scaling.cooldownPeriod }}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: {{ .scaling.scaleDownStabilizationSeconds }}
          policies:
            - { type: Pods, value: 1, periodSeconds: 300 }
        scaleUp:
          stabilizationWindowSeconds: 60
          policies:
            - { type: Pods, value: 2, periodSeconds: 120 }
  triggers:
    {{- $scaling := .scaling }}
    {{- range (.lags | default (list (dict "group" .group "topic" .topic))) }}
    - type: kafka
      metadata:
        bootstrapServers: {{ $ctx.Values.kafka.bootstrapServers | quote }}
        consumerGroup: {{ .group | quote }}
        topic: {{ .topic | quote }}
        lagThreshold: {{ $scaling.lagThreshold | quote }}
        offsetResetPolicy: earliest
        allowIdleConsumers: "false"
        scaleToZeroOnInvalidOffset: "false"
    {{- end }}
{{- end -}}
