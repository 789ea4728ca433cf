{{- define "collector.env" -}}
- name: NANNY_SNAPSHOT__MAX_MESSAGE_BYTES
  value: {{ .Values.snapshot.maxMessageBytes | int | quote }}
{{- with .Values.prometheus.url }}
- name: NANNY_PROMETHEUS__URL
  value: {{ . | quote }}
{{- end }}
{{- end -}}
