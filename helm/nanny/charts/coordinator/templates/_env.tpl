{{/* Peers are the other subcharts' Services, found by the shared naming helpers. */}}
{{- define "coordinator.env" -}}
- name: NANNY_PEERS__COLLECTOR
  value: {{ include "nanny.grpcUrl" (dict "root" . "component" "collector") | quote }}
- name: NANNY_PEERS__ANALYZER
  value: {{ include "nanny.grpcUrl" (dict "root" . "component" "analyzer") | quote }}
- name: NANNY_PEERS__SAFETY_GATE
  value: {{ include "nanny.grpcUrl" (dict "root" . "component" "safety-gate") | quote }}
- name: NANNY_PEERS__REMEDIATOR
  value: {{ include "nanny.grpcUrl" (dict "root" . "component" "remediator") | quote }}
- name: NANNY_PEERS__TIMEOUT_MS
  value: {{ .Values.peers.timeoutMs | int | quote }}
- name: NANNY_PEERS__PROBE_INTERVAL_MS
  value: {{ .Values.peers.probeIntervalMs | int | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end -}}
