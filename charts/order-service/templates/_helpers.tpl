{{/* Chart name, overridable. */}}
{{- define "order-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name. The release is called order-service (CONTRACT.md), which yields plain
"order-service" rather than "order-service-order-service".
*/}}
{{- define "order-service.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "order-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "order-service.labels" -}}
helm.sh/chart: {{ include "order-service.chart" . }}
{{ include "order-service.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: order-service
{{- end }}

{{/* Immutable selector labels: never add to these, Deployments cannot change their selector. */}}
{{- define "order-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "order-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The migration Job's pod: not the selector labels, which are for serving pods only. */}}
{{- define "order-service.migrateLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: order-service
app.kubernetes.io/component: migrate
{{- end }}

{{- define "order-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "order-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when a digest is given, else repository:tag (tag defaults to appVersion). */}}
{{- define "order-service.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Hardened container securityContext, shared by the app and the test pod. */}}
{{- define "order-service.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "order-service.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Environment for the container: exactly the variables CONTRACT.md lists, in a stable order.
Values left null are not rendered, so the binary's default applies.
*/}}
{{- define "order-service.env" -}}
{{- $c := .Values.config }}
{{- $sm := .Values.secretsManager }}
{{- $vars := list
  (list "ENVIRONMENT" $c.environment)
  (list "LOG_LEVEL" $c.logLevel)
  (list "LOG_FORMAT" $c.logFormat)
  (list "ENABLE_METRICS" $c.enableMetrics)
  (list "PORT" .Values.ports.http)
  (list "METRICS_PORT" .Values.ports.metrics)
  (list "STORE" $c.store)
  (list "SEED_SAMPLE_DATA" $c.seedSampleData)
  (list "DB_SCHEMA" $c.dbSchema)
  (list "DB_MAX_CONNECTIONS" $c.dbMaxConnections)
  (list "DB_POOL_WAIT_TIMEOUT_MS" $c.dbPoolWaitTimeoutMs)
  (list "DB_ACQUIRE_TIMEOUT_MS" $c.dbAcquireTimeoutMs)
  (list "DB_STATEMENT_TIMEOUT_MS" $c.dbStatementTimeoutMs)
  (list "SECRETS_MANAGER_ENABLED" $sm.enabled)
  (list "SECRET_REFRESH_SECONDS" $c.secretRefreshSeconds)
  (list "REQUEST_TIMEOUT_MS" $c.requestTimeoutMs)
  (list "BODY_LIMIT_BYTES" $c.bodyLimitBytes)
  (list "PAGE_MAX_BYTES" $c.pageMaxBytes)
  (list "COMPRESSION_MIN_BYTES" $c.compressionMinBytes)
  (list "PUBLIC_READS" $c.publicReads)
  (list "SHUTDOWN_DRAIN_SECONDS" .Values.shutdown.drainSeconds)
  (list "SHUTDOWN_GRACE_SECONDS" .Values.shutdown.graceSeconds)
  (list "HEADER_READ_TIMEOUT_MS" .Values.connections.headerReadTimeoutMs)
  (list "KEEP_ALIVE_TIMEOUT_SECONDS" .Values.connections.keepAliveTimeoutSeconds)
  (list "MAX_IN_FLIGHT_REQUESTS" .Values.connections.maxInFlightRequests)
  (list "ADAPTIVE_CONCURRENCY" .Values.connections.adaptiveConcurrency)
  (list "QUEUE_WAIT_TIMEOUT_MS" .Values.connections.queueWaitTimeoutMs)
  (list "WRITE_TIMEOUT_MS" .Values.connections.writeTimeoutMs)
  (list "MAX_CONNECTIONS" .Values.connections.maxConnections)
  (list "MAX_REQUEST_HEAD_BYTES" .Values.connections.maxRequestHeadBytes)
}}
{{- if $sm.enabled }}
{{- $vars = append $vars (list "AWS_SECRET_NAME" $sm.secretName) }}
{{- end }}
{{- if $sm.region }}
{{- $vars = append $vars (list "AWS_REGION" $sm.region) }}
{{- end }}
{{- range $vars }}
{{- $value := index . 1 }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ index . 0 }}
  {{- /* YAML numbers arrive as float64; print them as integers, never as 1e+06. */}}
  value: {{ (kindIs "float64" $value) | ternary (int64 $value | toString) (toString $value) | quote }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Refuse values that would deploy something broken; the schema cannot express cross-field rules.
*/}}
{{- define "order-service.validate" -}}
{{- $v := .Values }}
{{- /*
After SIGTERM the ALB keeps sending new requests to the pod until the AWS Load Balancer
Controller has deregistered it and the ELB API change has propagated: the controller's
maintainers name controller time + ELB API propagation (about 10 s) + request round trip
(kubernetes-sigs/aws-load-balancer-controller#1719), and field reports there find 5 s too short
and 25 s enough for IP targets (#1064). The drain, which serves while /ready says 503, must
last at least this long behind the Ingress.
*/}}
{{- $deregistrationSeconds := 30 }}
{{- if and $v.ingress.enabled (lt (int $v.shutdown.drainSeconds) $deregistrationSeconds) }}
{{- fail (printf "shutdown.drainSeconds (%v) must be at least %v behind the ALB: the AWS Load Balancer Controller takes that long to deregister a target, and requests it still sends to a stopped pod are 502s" $v.shutdown.drainSeconds $deregistrationSeconds) }}
{{- end }}
{{- $budget := add $v.shutdown.drainSeconds $v.shutdown.graceSeconds }}
{{- if le (int $v.terminationGracePeriodSeconds) (int $budget) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed shutdown.drainSeconds + shutdown.graceSeconds (%v), or the kubelet kills the pod mid-drain" $v.terminationGracePeriodSeconds $budget) }}
{{- end }}
{{- if le (int $v.connections.keepAliveTimeoutSeconds) (int $v.connections.loadBalancerIdleTimeoutSeconds) }}
{{- fail (printf "connections.keepAliveTimeoutSeconds (%v) must exceed connections.loadBalancerIdleTimeoutSeconds (%v): a pod that closes idle connections first turns the ALB's reuse of them into 502s" $v.connections.keepAliveTimeoutSeconds $v.connections.loadBalancerIdleTimeoutSeconds) }}
{{- end }}
{{- if eq (int $v.ports.http) (int $v.ports.metrics) }}
{{- fail "ports.http and ports.metrics must differ: /metrics is never served on the API port" }}
{{- end }}
{{- if and $v.secretsManager.enabled (not $v.secretsManager.secretName) }}
{{- fail "secretsManager.secretName is required when secretsManager.enabled is true" }}
{{- end }}
{{- if eq $v.config.store "postgres" }}
{{- $fromExtraEnv := false }}
{{- range $v.extraEnv }}{{ if eq .name "DATABASE_URL" }}{{ $fromExtraEnv = true }}{{ end }}{{ end }}
{{- if not (or $v.secretsManager.enabled $v.envFromSecrets $fromExtraEnv) }}
{{- fail "config.store=postgres needs a database URL: enable secretsManager, or provide DATABASE_URL through envFromSecrets or extraEnv" }}
{{- end }}
{{- end }}
{{- if $v.autoscaling.enabled }}
{{- if gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}
{{- if eq $v.config.store "memory" }}
{{- $pods := ternary $v.autoscaling.maxReplicas $v.replicas (and $v.autoscaling.enabled true) }}
{{- if gt (int $pods) 1 }}
{{- fail (printf "config.store=memory keeps orders in each pod's own memory, and up to %v pods can run (%s): ids would collide, idempotency keys would hold per pod and GET /orders/{id} would depend on the pod that answers. Use config.store=postgres, or one pod (replicas: 1, autoscaling.enabled: false)" $pods (ternary "autoscaling.maxReplicas" "replicas" (and $v.autoscaling.enabled true))) }}
{{- end }}
{{- end }}
{{- if $v.pdb.enabled }}
{{- $min := not (kindIs "invalid" $v.pdb.minAvailable) }}
{{- $max := not (kindIs "invalid" $v.pdb.maxUnavailable) }}
{{- if eq $min $max }}
{{- fail "pdb: set exactly one of pdb.minAvailable and pdb.maxUnavailable" }}
{{- end }}
{{- end }}
{{- if $v.ingress.enabled }}
{{- if not $v.ingress.host }}
{{- fail "ingress.host is required when ingress.enabled is true" }}
{{- end }}
{{- if not $v.ingress.certificateArn }}
{{- fail "ingress.certificateArn is required when ingress.enabled is true: the ALB listens on HTTPS" }}
{{- end }}
{{- end }}
{{- end }}
