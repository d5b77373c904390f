{{/*
Helpers of the pirate-workers chart. Every name is prefixed with the chart name so a parent
chart's helpers can never shadow them.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "pirate-workers.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every resource name: fullnameOverride, else "<release>-<name>", else the release
name alone when it already contains the chart name. Capped at 40 characters so suffixes such as
"-operator" and the operator's "<pool>-<role>" Deployments stay within DNS limits.
*/}}
{{- define "pirate-workers.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "pirate-workers.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "pirate-workers.labels" -}}
helm.sh/chart: {{ include "pirate-workers.chart" . }}
{{ include "pirate-workers.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pirate-workers
{{- end -}}

{{/* Labels that identify the release; selectors add app.kubernetes.io/component. */}}
{{- define "pirate-workers.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pirate-workers.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of the operator pod. */}}
{{- define "pirate-workers.operator.selectorLabels" -}}
{{ include "pirate-workers.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Selector labels of the bundled Redis pod. */}}
{{- define "pirate-workers.redis.selectorLabels" -}}
{{ include "pirate-workers.selectorLabels" . }}
app.kubernetes.io/component: redis
{{- end -}}

{{/* Name of the operator Deployment (and of its Service and RBAC objects). */}}
{{- define "pirate-workers.operator.fullname" -}}
{{- printf "%s-operator" (include "pirate-workers.fullname" .) -}}
{{- end -}}

{{/* Name of the ClusterRole/ClusterRoleBinding: cluster-scoped, so the namespace makes it unique. */}}
{{- define "pirate-workers.operator.clusterRoleName" -}}
{{- printf "%s-%s" (include "pirate-workers.operator.fullname" .) .Release.Namespace | trunc 253 -}}
{{- end -}}

{{/* Name of the bundled Redis StatefulSet and Service. */}}
{{- define "pirate-workers.redis.fullname" -}}
{{- printf "%s-redis" (include "pirate-workers.fullname" .) -}}
{{- end -}}

{{/*
Labels of the worker pods the operator creates for every pool (pirate_operator.kube.names): the
NetworkPolicies admit them to Redis and PostgreSQL.
*/}}
{{- define "pirate-workers.workerLabels" -}}
app.kubernetes.io/name: pirate-worker
app.kubernetes.io/managed-by: pirate-workers
{{- end -}}

{{/* Selector labels of the bundled PostgreSQL pod. */}}
{{- define "pirate-workers.postgresql.selectorLabels" -}}
{{ include "pirate-workers.selectorLabels" . }}
app.kubernetes.io/component: postgresql
{{- end -}}

{{/* Name of the bundled PostgreSQL StatefulSet and Service. */}}
{{- define "pirate-workers.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "pirate-workers.fullname" .) -}}
{{- end -}}

{{/* The Secret with the bundled Redis's password and URL: the user's, or the generated one. */}}
{{- define "pirate-workers.redis.authSecretName" -}}
{{- default (printf "%s-redis-auth" (include "pirate-workers.fullname" .)) .Values.redis.bundled.auth.existingSecret -}}
{{- end -}}

{{/* The Secret with the bundled PostgreSQL's password and URL: the user's, or the generated one. */}}
{{- define "pirate-workers.postgresql.authSecretName" -}}
{{- default (printf "%s-postgresql-auth" (include "pirate-workers.fullname" .)) .Values.database.bundled.auth.existingSecret -}}
{{- end -}}

{{/*
A generated password: the one already stored in Secret $name (so `helm upgrade` and a reinstall
over kept data keep it), else a new random one. Called once per Secret; the value is rendered
into that Secret only. Offline renders (`helm template`) see no cluster and always generate.
*/}}
{{- define "pirate-workers.storedOrNewPassword" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace $name -}}
{{- if and $existing (hasKey (default dict $existing.data) "password") -}}
{{- index $existing.data "password" | b64dec -}}
{{- else -}}
{{- randAlphaNum 40 -}}
{{- end -}}
{{- end -}}

{{/* Name of the claim of the recorder's files: the user's, or the one the chart creates. */}}
{{- define "pirate-workers.outputs.claimName" -}}
{{- default (printf "%s-outputs" (include "pirate-workers.fullname" .)) .Values.outputs.persistence.existingClaim -}}
{{- end -}}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "pirate-workers.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pirate-workers.operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name the existing ServiceAccount the operator should run as" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository[:tag][@digest] of an image block; the tag defaults to the chart's appVersion. */}}
{{- define "pirate-workers.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- $ref := printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- if $image.digest -}}
{{- $ref = printf "%s@%s" $ref $image.digest -}}
{{- end -}}
{{- $ref -}}
{{- end -}}

{{/* Name of the Secret the chart creates for provider.apiKey. */}}
{{- define "pirate-workers.providerSecretName" -}}
{{- printf "%s-provider" (include "pirate-workers.fullname" .) -}}
{{- end -}}

{{/* Name of the default pool. */}}
{{- define "pirate-workers.poolName" -}}
{{- default (include "pirate-workers.fullname" .) .Values.pool.name -}}
{{- end -}}

{{/*
Rules across values that a JSON schema cannot say clearly. Included by the operator Deployment,
which every render contains, so `helm template`, `helm install` and `helm upgrade` all fail
early with one line naming the values to fix.
*/}}
{{- define "pirate-workers.validate" -}}
{{- $redis := .Values.redis -}}
{{- $sources := list -}}
{{- if $redis.url }}{{ $sources = append $sources "redis.url" }}{{ end -}}
{{- if $redis.existingSecret.name }}{{ $sources = append $sources "redis.existingSecret.name" }}{{ end -}}
{{- if $redis.bundled.enabled }}{{ $sources = append $sources "redis.bundled.enabled" }}{{ end -}}
{{- if gt (len $sources) 1 -}}
{{- fail (printf "redis: set only one of redis.url, redis.existingSecret.name and redis.bundled.enabled (got %s); to use an external Redis also set redis.bundled.enabled=false" (join ", " $sources)) -}}
{{- end -}}
{{- if and .Values.pool.enabled (eq (len $sources) 0) -}}
{{- fail "redis: pool.enabled needs a Redis: set redis.url, redis.existingSecret.name, or redis.bundled.enabled=true" -}}
{{- end -}}
{{- $database := .Values.database -}}
{{- $databases := list -}}
{{- if $database.url }}{{ $databases = append $databases "database.url" }}{{ end -}}
{{- if $database.existingSecret.name }}{{ $databases = append $databases "database.existingSecret.name" }}{{ end -}}
{{- if $database.bundled.enabled }}{{ $databases = append $databases "database.bundled.enabled" }}{{ end -}}
{{- if gt (len $databases) 1 -}}
{{- fail (printf "database: set only one of database.url, database.existingSecret.name and database.bundled.enabled (got %s); to use an external database also set database.bundled.enabled=false" (join ", " $databases)) -}}
{{- end -}}
{{- if and $database.url (regexMatch "^[a-z+]+://[^/@]*:[^/@]*@" $database.url) -}}
{{- fail "database: database.url carries a password, which would be stored in the pool's spec; put the URL in a Secret and set database.existingSecret.name instead" -}}
{{- end -}}
{{- $ephemeral := .Values.pool.ephemeralResults -}}
{{- if and .Values.pool.enabled (eq (len $databases) 0) (not $ephemeral) -}}
{{- fail "database: the pool's HSDS records need a database that outlives its pods: set database.url, database.existingSecret.name or database.bundled.enabled=true (or pool.ephemeralResults=true for a throwaway run)" -}}
{{- end -}}
{{- if and .Values.pool.enabled $database.bundled.enabled (not $database.bundled.persistence.enabled) (not $ephemeral) -}}
{{- fail "database: database.bundled.persistence.enabled=false keeps the HSDS database on an emptyDir that is deleted with its pod; enable it (or set pool.ephemeralResults=true for a throwaway run)" -}}
{{- end -}}
{{- $outputs := .Values.outputs -}}
{{- if and .Values.pool.enabled (not $outputs.persistence.enabled) (not $ephemeral) -}}
{{- fail "outputs: outputs.persistence.enabled=false puts the recorder's files on storage deleted with each pod; enable it (or set pool.ephemeralResults=true for a throwaway run)" -}}
{{- end -}}
{{- if and $outputs.persistence.enabled (not $outputs.persistence.existingClaim) (not $outputs.keepOnOneNode) (not (has "ReadWriteMany" $outputs.persistence.accessModes)) -}}
{{- fail "outputs: outputs.keepOnOneNode=false spreads recorder pods over nodes, which needs outputs.persistence.accessModes to include ReadWriteMany" -}}
{{- end -}}
{{- $provider := .Values.provider -}}
{{- if and $provider.apiKey $provider.existingSecret.name -}}
{{- fail "provider: set provider.apiKey or provider.existingSecret.name, not both" -}}
{{- end -}}
{{- $hasKey := or $provider.apiKey $provider.existingSecret.name -}}
{{- if and .Values.pool.enabled (has $provider.name (list "anthropic" "claude")) (not $hasKey) -}}
{{- fail (printf "provider: provider.name=%s needs an API key: set provider.existingSecret.name (recommended) or provider.apiKey" $provider.name) -}}
{{- end -}}
{{- if and .Values.pool.enabled (eq $provider.name "openai") (not $hasKey) (not $provider.baseUrl) -}}
{{- fail "provider: provider.name=openai needs an API key (provider.existingSecret.name or provider.apiKey) unless provider.baseUrl points at a keyless endpoint" -}}
{{- end -}}
{{- if and .Values.rbac.clusterWide .Values.operator.watchNamespaces -}}
{{- fail "rbac: operator.watchNamespaces lists namespaces but rbac.clusterWide=true watches all of them; clear one of the two" -}}
{{- end -}}
{{- if and .Values.pool.enabled .Values.pool.uninstallCleanup.enabled (not .Values.rbac.create) -}}
{{- fail "pool: pool.uninstallCleanup.enabled needs rbac.create=true (its hook Job gets its own Role); with rbac.create=false set pool.uninstallCleanup.enabled=false and delete the pool before helm uninstall" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "metrics: metrics.serviceMonitor.enabled needs metrics.service.enabled=true (the ServiceMonitor scrapes that Service)" -}}
{{- end -}}
{{- if .Values.pool.enabled -}}
{{- range $name, $role := .Values.pool.roles -}}
{{- if and $role (not (has $name (list "llm" "reconciler" "recorder"))) (not $role.queues) -}}
{{- fail (printf "pool: custom role pool.roles.%s needs queues (the RQ queues its workers listen on)" $name) -}}
{{- end -}}
{{- if and $role (hasKey $role "minReplicas") (hasKey $role "maxReplicas") (gt (int $role.minReplicas) (int $role.maxReplicas)) -}}
{{- fail (printf "pool: pool.roles.%s.minReplicas (%d) is greater than maxReplicas (%d)" $name (int $role.minReplicas) (int $role.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
What the operator may do with the objects of a namespace it watches, and nothing more: its own
pools (no create/delete: users own them), the worker Deployments it owns, their pods (read, and
patch for the pod-deletion-cost annotation), Events about its decisions, and single Secrets it
is pointed at (get only: never list or watch every Secret of the namespace).
*/}}
{{- define "pirate-workers.operator.rules" -}}
- apiGroups: ["pirateradio.dev"]
  resources: ["pirateworkerpools"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["pirateradio.dev"]
  resources: ["pirateworkerpools/status"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- if .Values.operator.peering.enabled }}
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end -}}

{{/* Name of the pre-delete hook that deletes the default pool (Job, ServiceAccount, Role). */}}
{{- define "pirate-workers.poolCleanup.fullname" -}}
{{- printf "%s-pool-cleanup" (include "pirate-workers.fullname" .) -}}
{{- end -}}

{{/* Annotations of the pre-delete hook's objects; $weight orders them (RBAC before the Job). */}}
{{- define "pirate-workers.poolCleanup.annotations" -}}
helm.sh/hook: pre-delete
helm.sh/hook-weight: {{ . | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end -}}

{{/*
The pre-delete hook's program (Python and the operator's own API client, both in the operator
image): delete the pool, then wait until it is gone, i.e. the operator has stopped scaling it and
removed its finalizer. Reads POOL_NAME, POOL_NAMESPACE and TIMEOUT_SECONDS. Outside a pod it
uses the local kubeconfig, which is how tests/chart runs it against a real apiserver.
*/}}
{{- define "pirate-workers.poolCleanup.script" -}}
import os, sys, time
from pirate_operator.kube import KubeApi, KubeError, open_http_client

name, namespace = os.environ["POOL_NAME"], os.environ["POOL_NAMESPACE"]
timeout = float(os.environ["TIMEOUT_SECONDS"])
try:
    api = KubeApi(open_http_client())
    if not api.delete_pool(namespace, name):
        print(f"pool {namespace}/{name} does not exist: nothing to clean up")
        sys.exit(0)
    print(f"deleted pool {namespace}/{name}; waiting up to {timeout:.0f}s for the operator to release it")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not api.pool_exists(namespace, name):
            print(f"pool {namespace}/{name} is gone")
            sys.exit(0)
        time.sleep(1)
except KubeError as exc:
    print(f"cannot clean up pool {namespace}/{name}: {exc}", file=sys.stderr)
    sys.exit(1)
print(
    f"pool {namespace}/{name} is still terminating after {timeout:.0f}s: the operator did not remove "
    "its finalizer (is it running?). Remove it by hand, then uninstall without hooks:\n"
    f"  kubectl -n {namespace} patch pirateworkerpool {name} --type=merge "
    "-p '{\"metadata\":{\"finalizers\":null}}'\n"
    "  helm uninstall <release> --no-hooks",
    file=sys.stderr,
)
sys.exit(1)
{{- end -}}
