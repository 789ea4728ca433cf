{{/* Empty llm.endpoint means the umbrella's bundled Ollama. */}}
{{- define "analyzer.llmEndpoint" -}}
{{- default (printf "http://%s.%s.svc:11434" (include "nanny.fullname" (dict "root" . "component" "ollama")) .Release.Namespace) .Values.llm.endpoint -}}
{{- end -}}

{{- define "analyzer.env" -}}
{{- $llm := .Values.llm -}}
- name: NANNY_LLM__ENABLED
  value: {{ $llm.enabled | quote }}
- name: NANNY_LLM__PROVIDER
  value: {{ $llm.provider | quote }}
- name: NANNY_LLM__ENDPOINT
  value: {{ include "analyzer.llmEndpoint" . | quote }}
- name: NANNY_LLM__MODEL
  value: {{ $llm.model | quote }}
- name: NANNY_LLM__TIMEOUT_SECS
  value: {{ $llm.timeoutSecs | int | quote }}
- name: NANNY_LLM__PARALLEL
  value: {{ $llm.parallel | default 1 | int | quote }}
- name: NANNY_LLM__QUEUE_CAPACITY
  value: {{ $llm.queueCapacity | default 256 | int | quote }}
- name: NANNY_LLM__MAX_TOKENS
  value: {{ $llm.maxTokens | int | quote }}
- name: NANNY_LLM__TEMPERATURE
  value: {{ $llm.temperature | quote }}
- name: NANNY_LLM__MIN_CONFIDENCE
  value: {{ $llm.minConfidence | quote }}
- name: NANNY_LLM__MAX_RECOMMENDATIONS
  value: {{ $llm.maxRecommendations | int | quote }}
{{- with $llm.allowedModels }}
- name: NANNY_LLM__ALLOWED_MODELS
  value: {{ join "," . | quote }}
{{- end }}
{{- end -}}
