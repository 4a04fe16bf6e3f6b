{{/* Names, labels and the pieces every streamrec pod shares. */}}

{{- define "streamrec.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "streamrec.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's objects: <fullname>-<component>, at most 63 characters. */}}
{{- define "streamrec.componentName" -}}
{{- printf "%s-%s" (include "streamrec.fullname" .root | trunc 52 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "streamrec.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "streamrec.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: streamrec
{{- end -}}

{{- define "streamrec.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamrec.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of a component's objects (context: dict "root" $ "component" "api"). */}}
{{- define "streamrec.componentLabels" -}}
{{ include "streamrec.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
Labels of a Service that exposes /metrics. The ServiceMonitor selects on
streamrec.io/metrics and takes the Prometheus job name from streamrec.io/job,
so jobs are named as in deploy/prometheus (streamrec-worker, -api, -encoder).
*/}}
{{- define "streamrec.metricsServiceLabels" -}}
{{ include "streamrec.componentLabels" . }}
streamrec.io/metrics: "true"
streamrec.io/job: streamrec-{{ .component }}
{{- end -}}

{{- define "streamrec.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "streamrec.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "streamrec.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "streamrec.connectionSecretName" -}}
{{- default (printf "%s-connections" (include "streamrec.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{/* One worker per partition unless replicas says otherwise; never more workers than partitions. */}}
{{- define "streamrec.workerReplicas" -}}
{{- $partitions := int .Values.config.topicPartitions -}}
{{- $replicas := $partitions -}}
{{- if not (kindIs "invalid" .Values.worker.replicas) -}}
{{- $replicas = int .Values.worker.replicas -}}
{{- end -}}
{{- if gt $replicas $partitions -}}
{{- fail (printf "worker.replicas (%d) exceeds config.topicPartitions (%d): a worker without a partition idles; raise the partitions first" $replicas $partitions) -}}
{{- end -}}
{{- $replicas -}}
{{- end -}}

{{/* Pod annotations that roll the pods when their configuration changes. */}}
{{- define "streamrec.configChecksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end -}}

{{/* Pod-level fields shared by every component. */}}
{{- define "streamrec.podSpecCommon" -}}
serviceAccountName: {{ include "streamrec.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Environment of every streamrec container: the ConfigMap, the connection Secret and referenced keys. */}}
{{- define "streamrec.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "streamrec.fullname" . }}
  - secretRef:
      name: {{ include "streamrec.connectionSecretName" . }}
{{- end -}}

{{- define "streamrec.env" -}}
- name: HOME
  value: /tmp
{{- if .Values.encoder.enabled }}
- name: STREAMREC_ENCODER_URL
  value: {{ printf "http://%s:%d" (include "streamrec.componentName" (dict "root" . "component" "encoder")) (int .Values.encoder.port) | quote }}
{{- end }}
{{- with .Values.kafka.sasl.passwordSecret }}
{{- if .name }}
- name: STREAMREC_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- with .Values.kafka.tls.caSecret }}
{{- if .name }}
- name: STREAMREC_KAFKA_SSL_CAFILE
  value: /etc/streamrec/kafka-ca/{{ .key }}
{{- end }}
{{- end }}
{{- with .Values.milvus.tokenSecret }}
{{- if .name }}
- name: STREAMREC_MILVUS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
A value as the settings parse it: lists and maps as JSON, whole numbers as
digits (Helm reads every number as a float64, which toString would write as
1e+07, an integer setting rejects), anything else as its string.
*/}}
{{- define "streamrec.envValue" -}}
{{- if or (kindIs "slice" .) (kindIs "map" .) -}}
{{- toJson . -}}
{{- else if and (kindIs "float64" .) (eq (floor .) .) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* A component's own env map ({NAME: value}) as a list. */}}
{{- define "streamrec.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ include "streamrec.envValue" $value | quote }}
{{- end }}
{{- end -}}

{{- define "streamrec.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.caSecret.name }}
- name: kafka-ca
  mountPath: /etc/streamrec/kafka-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "streamrec.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.kafka.tls.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret.name }}
    items:
      - key: {{ .Values.kafka.tls.caSecret.key }}
        path: {{ .Values.kafka.tls.caSecret.key }}
{{- end }}
{{- end -}}

{{/* HTTP probes on /healthz and /readyz; the startup probe gives model loading and table recovery time. */}}
{{- define "streamrec.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}
