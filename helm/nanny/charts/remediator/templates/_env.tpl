{{- define "remediator.env" -}}
- name: NANNY_VERDICTS__PUBLIC_KEYS
  value: /etc/nanny-verdict-keys/gate.pem{{ if .Values.global.verdictSigning.previousCertificate }},/etc/nanny-verdict-keys/previous.pem{{ end }}
- name: NANNY_RECORDS__MAC_KEY
  value: /etc/nanny-records-key/mac.key
{{- /* The gate's protections, checked again by the remediator itself. */}}
{{- with .Values.global.protectedResources }}
- name: NANNY_PROTECTED__NAMESPACES
  value: {{ join "," .namespaces | quote }}
- name: NANNY_PROTECTED__KINDS
  value: {{ join "," .kinds | quote }}
- name: NANNY_PROTECTED__LABELS
  value: {{ join "," .labels | quote }}
{{- end }}
- name: NANNY_FIELD_MANAGER
  value: {{ .Values.fieldManager | quote }}
{{- if .Values.actionRecords.enabled }}
- name: NANNY_STATE_NAMESPACE
  value: {{ .Release.Namespace | quote }}
- name: NANNY_RECORDS__RETENTION_SECS
  value: {{ .Values.actionRecords.retentionSecs | int | quote }}
{{- end }}
{{- end -}}
