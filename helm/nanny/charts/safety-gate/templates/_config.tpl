{{/*
The gate's config file, in the exact shape of nanny-safety-gate's Config
(crates/safety-gate/src/config.rs; unknown keys are refused). Listen
addresses and telemetry come from NANNY_* env, which wins over the file.
*/}}
{{- define "safety-gate.config" -}}
{{- $p := .Values.global.protectedResources -}}
{{- $l := .Values.limits -}}
protected:
  namespaces:
    {{- toYaml $p.namespaces | nindent 4 }}
  kinds:
    {{- toYaml $p.kinds | nindent 4 }}
  labels:
    {{- toYaml $p.labels | nindent 4 }}
max_snapshot_age_secs: {{ .Values.maxSnapshotAgeSecs }}
storm:
  max_unhealthy_node_percent: {{ .Values.storm.maxUnhealthyNodePercent }}
  max_open_issues: {{ .Values.storm.maxOpenIssues }}
  max_drain_evictions: {{ .Values.storm.maxDrainEvictions }}
limits:
  global_actions_per_hour: {{ $l.globalActionsPerHour }}
  actions_per_hour: {{ $l.actionsPerHour }}
  actions_per_namespace_per_hour: {{ $l.actionsPerNamespacePerHour }}
  actions_per_target_per_hour: {{ $l.actionsPerTargetPerHour }}
  cooldown_seconds: {{ $l.cooldownSeconds }}
  breaker_failure_threshold: {{ $l.breakerFailureThreshold }}
  breaker_open_seconds: {{ $l.breakerOpenSeconds }}
  max_disruption_percent: {{ $l.maxDisruptionPercent }}
audit:
  path: {{ if .Values.audit.enabled }}/var/lib/nanny/audit/audit.jsonl{{ else }}""{{ end }}
  ephemeral: {{ not .Values.audit.enabled }}
  {{- if and .Values.audit.enabled .Values.audit.anchor.enabled }}
  anchor_configmap: {{ printf "%s/%s-audit-anchor" .Release.Namespace .Release.Name | quote }}
  anchor_interval_secs: {{ .Values.audit.anchor.intervalSeconds }}
  {{- end }}
kubernetes:
  enabled: {{ .Values.kubernetes.enabled }}
{{- end -}}

{{/* The seeds' approval levels, by action type (see the default HealingPolicy). */}}
{{- define "safety-gate.approvalLevels" -}}
{{- toYaml .Values.global.approvalLevels -}}
{{- end -}}
