{{/*
Peers are the other subcharts' Services, found by the shared naming helpers.
The analyzer's is headless (analyzer.service.headless), so its name resolves
to every analyzer pod and the coordinator spreads Analyze calls over them.
*/}}
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
- name: NANNY_KUBERNETES__WATCH_NAMESPACE
  value: {{ .Values.kubernetes.watchNamespace | quote }}
- name: NANNY_KUBERNETES__LEASE_NAMESPACE
  value: {{ .Release.Namespace | quote }}
- name: NANNY_KUBERNETES__LEASE_NAME
  value: {{ include "nanny.fullname" (dict "root" . "component" .Chart.Name) | quote }}
- name: NANNY_KUBERNETES__LEASE_DURATION_SECS
  value: {{ .Values.kubernetes.leaseDurationSecs | int | quote }}
- name: NANNY_KUBERNETES__LEASE_RENEW_SECS
  value: {{ .Values.kubernetes.leaseRenewSecs | int | quote }}
{{- /* kubernetes.identity stays empty: the config falls back to $POD_NAME. */}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: NANNY_ACTIONS__MAX_IN_FLIGHT
  value: {{ .Values.actions.maxInFlight | int | quote }}
- name: NANNY_ACTIONS__MAX_ATTEMPTS
  value: {{ .Values.actions.maxAttempts | int | quote }}
- name: NANNY_ACTIONS__ANALYZE_TIMEOUT_SECS
  value: {{ .Values.actions.analyzeTimeoutSecs | int | quote }}
- name: NANNY_ACTIONS__EXECUTE_TIMEOUT_SECS
  value: {{ .Values.actions.executeTimeoutSecs | int | quote }}
- name: NANNY_ACTIONS__BLOCKED_RETRY_SECS
  value: {{ .Values.actions.blockedRetrySecs | int | quote }}
- name: NANNY_ACTIONS__BLOCKED_TRIES
  value: {{ .Values.actions.blockedTries | int | quote }}
- name: NANNY_ACTIONS__RETENTION_SECS
  value: {{ .Values.actions.retentionSecs | int | quote }}
{{- end -}}
