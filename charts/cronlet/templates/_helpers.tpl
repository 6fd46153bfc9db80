{{/* Chart name, overridable by nameOverride. */}}
{{- define "cronlet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources: fullnameOverride, else <release>-<chart> (just <release> when it
already contains the chart name). Truncated to 63 characters, the limit of a DNS label.
*/}}
{{- define "cronlet.fullname" -}}
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

{{/* Labels used in selectors: only name, instance and component, which never change on upgrade. */}}
{{- define "cronlet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cronlet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels on every resource of the chart. */}}
{{- define "cronlet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cronlet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cronlet
{{- end }}

{{/* Name of the ServiceAccount the operator runs as. */}}
{{- define "cronlet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cronlet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image reference: repository, then @digest if set, else :tag (default appVersion). */}}
{{- define "cronlet.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Default executor image: executorImage, else the operator image (it ships cronlet-execute). */}}
{{- define "cronlet.executorImage" -}}
{{- default (include "cronlet.image" .) .Values.executorImage }}
{{- end }}

{{/*
The RBAC rules of the operator, shared by the ClusterRole (cluster-wide) and the per-namespace Roles.
Least privilege: named verbs and resources only, never "*".
*/}}
{{- define "cronlet.rbacRules" -}}
# Watch ScheduledTasks. The operator never writes their spec or metadata...
- apiGroups: ["cronlet.dev"]
  resources: ["scheduledtasks"]
  verbs: ["get", "list", "watch"]
# ...only their status, with merge patches (never update).
- apiGroups: ["cronlet.dev"]
  resources: ["scheduledtasks/status"]
  verbs: ["patch"]
# One executor Job per attempt; delete for concurrencyPolicy Replace and history limits.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# List a Job's executor pods (by label): their termination message (the TaskResult), or why they did not start.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# Events about tasks (InvalidSchedule, RetriesExhausted, MissedSchedule, ...), core API only: that is what the operator posts.
# get: an Event that exists already (same task, reason and message) is read, and its count patched.
# list: a Job's FailedCreate Warnings say why an attempt has no pod (spec.startTimeout).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["get", "list", "create", "patch"]
{{- end }}

{{/* tenancy.podTemplateNamespaceSelector as the operator reads it: key=value pairs, comma-separated. */}}
{{- define "cronlet.namespaceSelector" -}}
{{- $pairs := list }}
{{- range $key, $value := .Values.tenancy.podTemplateNamespaceSelector }}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* The namespaces rule, for tenancy.podTemplateNamespaceSelector: which namespaces allow a podTemplate. */}}
{{- define "cronlet.namespacesRule" -}}
# Namespace labels (tenancy.podTemplateNamespaceSelector): which namespaces allow a podTemplate.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{/* Whether the Prometheus Operator CRDs are there, or rendering is forced. Arguments: (dict "root" $ "kind" "ServiceMonitor" "values" .Values.serviceMonitor) */}}
{{- define "cronlet.monitoringEnabled" -}}
{{- if and .values.enabled (or .values.forceEnable (.root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" .kind))) -}}
true
{{- end }}
{{- end }}

{{/* The Lease the replicas elect a leader on. */}}
{{- define "cronlet.leaseName" -}}
{{- .Values.leaderElection.resourceName | default (include "cronlet.fullname" .) -}}
{{- end -}}
