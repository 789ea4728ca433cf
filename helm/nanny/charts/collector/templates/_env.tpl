{{- define "collector.env" -}}
- name: NANNY_SNAPSHOT__MAX_MESSAGE_BYTES
  value: {{ .Values.snapshot.maxMessageBytes | int | quote }}
{{- range $key, $value := .Values.thresholds }}
- name: NANNY_THRESHOLDS__{{ snakecase $key | upper }}
  {{- /* JSON numbers are floats to Helm: whole ones are written as integers (no 1e+06). */}}
  value: {{ if eq (float64 $value) (floor (float64 $value)) }}{{ int64 $value | quote }}{{ else }}{{ $value | toString | quote }}{{ end }}
{{- end }}
{{- if .Values.tlsSecrets.enabled }}
- name: NANNY_KUBERNETES__TLS_SECRETS
  value: "true"
{{- end }}
{{- with .Values.prometheus.url }}
- name: NANNY_PROMETHEUS__URL
  value: {{ . | quote }}
{{- end }}
{{- end -}}
