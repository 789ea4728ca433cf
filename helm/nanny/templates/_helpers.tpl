{{/*
Named templates shared by the umbrella chart and its five service subcharts.
Helm loads every chart's templates into one set, so a subchart calls these
with its own context; that is why the subcharts are installed through the
umbrella only. Each service subchart is then a handful of one-line files plus
what is really its own (RBAC, config, HPA).
*/}}

{{/*
The prefix of every object name: the release name when it already says
"nanny" (release "nanny" gives "nanny-collector"), else "<release>-nanny".
*/}}
{{- define "nanny.prefix" -}}
{{- if contains "nanny" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-nanny" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of a component's objects. Call with (dict "root" $ "component" "collector"). */}}
{{- define "nanny.fullname" -}}
{{- printf "%s-%s" (include "nanny.prefix" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Cluster-scoped objects (ClusterRoles, bindings, the admission policy) carry
the namespace too, so two releases of the same name never collide.
*/}}
{{- define "nanny.clusterName" -}}
{{- printf "%s-%s-%s" .root.Release.Namespace (include "nanny.prefix" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nanny.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: what its Service selects (all tracks). */}}
{{- define "nanny.selectorLabels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* Common labels of one component's objects. */}}
{{- define "nanny.labels" -}}
{{ include "nanny.selectorLabels" . }}
app.kubernetes.io/part-of: nanny
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "nanny.chart" .root }}
{{- end -}}

{{/* A service's gRPC and HTTP ports, from global.ports.<component>. */}}
{{- define "nanny.grpcPort" -}}
{{- (index .root.Values.global.ports .component).grpc -}}
{{- end -}}
{{- define "nanny.httpPort" -}}
{{- (index .root.Values.global.ports .component).http -}}
{{- end -}}

{{/* In-cluster gRPC URL of a component (clients speak mutual TLS to it). */}}
{{- define "nanny.grpcUrl" -}}
{{- printf "http://%s.%s.svc:%s" (include "nanny.fullname" .) .root.Release.Namespace (include "nanny.grpcPort" .) -}}
{{- end -}}

{{- define "nanny.serviceAccountName" -}}
{{- default (include "nanny.fullname" .) .root.Values.serviceAccount.name -}}
{{- end -}}

{{/*
The image of one track: the track's own tag, else the service's tag, else
global.image.tag, else the chart's appVersion. A canary may name its own
repository too (a fork build); it defaults to the service's.
*/}}
{{- define "nanny.image" -}}
{{- $v := .root.Values -}}
{{- $repo := $v.image.repository -}}
{{- $tag := default (default .root.Chart.AppVersion $v.global.image.tag) $v.image.tag -}}
{{- if eq .track "canary" -}}
{{- $repo = default $repo $v.canary.image.repository -}}
{{- $tag = required (printf "%s.canary.image.tag is required when %s.canary.enabled is true" .component .component) $v.canary.image.tag -}}
{{- end -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{/* ServiceAccount. Pods of services without RBAC get no token mounted. */}}
{{- define "nanny.serviceAccount" -}}
{{- if .root.Values.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "nanny.serviceAccountName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "nanny.labels" . | nindent 4 }}
  {{- with .root.Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: {{ .kubeAccess }}
{{- end }}
{{- end -}}

{{/*
Service: gRPC and metrics ports. It selects every track, so a canary
Deployment takes its share of traffic by its replica count.
*/}}
{{- define "nanny.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "nanny.fullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "nanny.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  {{- if .root.Values.service.headless }}
  # Headless: clients resolve every replica and spread calls over them
  # (gRPC keeps one HTTP/2 connection, so a virtual IP would pin one pod).
  clusterIP: None
  {{- end }}
  selector:
    {{- include "nanny.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ include "nanny.grpcPort" . }}
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
    - name: metrics
      port: {{ include "nanny.httpPort" . }}
      targetPort: metrics
      protocol: TCP
      appProtocol: http
{{- end -}}

{{/* PodDisruptionBudget over every track of a component. */}}
{{- define "nanny.pdb" -}}
{{- $pdb := .root.Values.podDisruptionBudget -}}
{{- if $pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "nanny.fullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "nanny.labels" . | nindent 4 }}
spec:
  {{- if hasKey $pdb "minAvailable" }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "nanny.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/*
Deployment of one track ("stable" or "canary") of a component. Call with
(dict "root" $ "component" "collector" "track" "stable" "kubeAccess" true
"env" (include "collector.env" $) "volumes" ... "volumeMounts" ...).
Each track selects only its own pods, so the two ReplicaSets never fight.
*/}}
{{- define "nanny.deployment" -}}
{{- $v := .root.Values -}}
{{- $g := $v.global -}}
{{- $canary := eq .track "canary" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "nanny.fullname" . }}{{ if $canary }}-canary{{ end }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "nanny.labels" . | nindent 4 }}
    track: {{ .track }}
spec:
  {{- if $canary }}
  replicas: {{ $v.canary.replicas }}
  {{- else if not (and (hasKey $v "autoscaling") $v.autoscaling.enabled) }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "nanny.selectorLabels" . | nindent 6 }}
      track: {{ .track }}
  strategy:
    {{- if .recreate }}
    # A ReadWriteOnce volume: the old pod lets go before the new one mounts it.
    type: Recreate
    {{- else }}
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
    {{- end }}
  template:
    metadata:
      labels:
        {{- include "nanny.labels" . | nindent 8 }}
        track: {{ .track }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- with .checksum }}
        # Roll the pods when their config file changes.
        checksum/config: {{ . }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "nanny.serviceAccountName" . }}
      automountServiceAccountToken: {{ .kubeAccess }}
      enableServiceLinks: false
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $g.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      # The grace covers server.shutdown_grace_secs plus the endpoint removal delay.
      terminationGracePeriodSeconds: {{ add $v.shutdownGraceSeconds 5 }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile:
          type: RuntimeDefault
      {{- with (merge (dict) $v.nodeSelector $g.nodeSelector) }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (concat $g.tolerations $v.tolerations) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "nanny.image" . | quote }}
          imagePullPolicy: {{ default $g.image.pullPolicy $v.image.pullPolicy }}
          ports:
            - name: grpc
              containerPort: {{ include "nanny.grpcPort" . }}
              protocol: TCP
            - name: metrics
              containerPort: {{ include "nanny.httpPort" . }}
              protocol: TCP
          env:
            - name: NANNY_SERVER__GRPC_ADDR
              value: "0.0.0.0:{{ include "nanny.grpcPort" . }}"
            - name: NANNY_SERVER__HTTP_ADDR
              value: "0.0.0.0:{{ include "nanny.httpPort" . }}"
            - name: NANNY_SERVER__SHUTDOWN_GRACE_SECS
              value: {{ $v.shutdownGraceSeconds | quote }}
            - name: NANNY_SERVER__WORKER_THREADS
              value: {{ $v.workerThreads | quote }}
            - name: NANNY_TELEMETRY__LOG_FORMAT
              value: {{ $g.telemetry.logFormat | quote }}
            - name: NANNY_TELEMETRY__LOG_FILTER
              value: {{ default $g.telemetry.logFilter $v.logFilter | quote }}
            # Mutual TLS: this component's certificate (see templates/tls.yaml).
            - name: NANNY_TLS__CA
              value: /etc/nanny/tls/ca.crt
            - name: NANNY_TLS__CERT
              value: /etc/nanny/tls/tls.crt
            - name: NANNY_TLS__KEY
              value: /etc/nanny/tls/tls.key
            {{- with $g.telemetry.otlpEndpoint }}
            - name: NANNY_TELEMETRY__OTLP_ENDPOINT
              value: {{ . | quote }}
            {{- end }}
            {{- with .env }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          # Readiness is the service's own grpc.health.v1 status (SERVING only
          # once its dependencies are reachable), mirrored by /readyz on the
          # HTTP port: the kubelet's gRPC probes cannot present a client
          # certificate, and the gRPC port serves mutual TLS only. Liveness is
          # the HTTP server answering at all, so an unreachable peer never
          # restarts a pod.
          startupProbe:
            httpGet:
              path: /readyz
              port: metrics
            periodSeconds: 2
            failureThreshold: 60
          readinessProbe:
            httpGet:
              path: /readyz
              port: metrics
            periodSeconds: 5
            failureThreshold: 2
          livenessProbe:
            httpGet:
              path: /healthz
              port: metrics
            periodSeconds: 10
            failureThreshold: 3
          {{- with $v.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: tls
              mountPath: /etc/nanny/tls
              readOnly: true
            {{- with .volumeMounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        # The root filesystem is read-only; scratch space lives here.
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        # Rotated in place by cert-manager or an upgrade; the service reloads it.
        - name: tls
          secret:
            secretName: {{ include "nanny.fullname" . }}-tls
            defaultMode: 0440
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
{{- end -}}

{{/* The stable Deployment and, when enabled, the canary one. */}}
{{- define "nanny.deployments" -}}
{{- include "nanny.deployment" (merge (dict "track" "stable") .) }}
{{- if .root.Values.canary.enabled }}
---
{{ include "nanny.deployment" (merge (dict "track" "canary") .) }}
{{- end }}
{{- end -}}
