{{- define "remediator.env" -}}
- name: NANNY_VERDICTS__PUBLIC_KEYS
  value: /etc/nanny-verdict-keys/gate.pem
- name: NANNY_FIELD_MANAGER
  value: {{ .Values.fieldManager | quote }}
{{- if .Values.actionRecords.enabled }}
- name: NANNY_STATE_NAMESPACE
  value: {{ .Release.Namespace | quote }}
- name: NANNY_RECORDS__RETENTION_SECS
  value: {{ .Values.actionRecords.retentionSecs | int | quote }}
{{- end }}
{{- end -}}
