{{/*
  The release's name when it holds the chart's name or begins it (release token-lifecycle: objects
  token-lifecycle), else both; 63 characters at most (a DNS label).
*/}}
{{- define "tlw.fullname" -}}
{{- if or (contains .Chart.Name .Release.Name) (hasPrefix .Release.Name .Chart.Name) -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels that select the worker's pods. */}}
{{- define "tlw.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Every object's labels. */}}
{{- define "tlw.labels" -}}
{{ include "tlw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "tlw.serviceAccountName" -}}
{{- default (include "tlw.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "tlw.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Non-root (the image's `node` user, uid 1000), as the Dockerfile runs it. */}}
{{- define "tlw.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The code is root's and read-only; the process writes nothing but /tmp. */}}
{{- define "tlw.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "tlw.temporalTlsEnabled" -}}
{{- if or .Values.temporal.tls.enabled .Values.temporal.tls.clientCertificateSecret .Values.temporal.tls.caSecret -}}true{{- end -}}
{{- end -}}

{{/* What the worker and tokenctl both read to reach Temporal (shared/settings.ts). */}}
{{- define "tlw.temporalEnv" -}}
- name: TEMPORAL_ADDRESS
  value: {{ .Values.temporal.address | quote }}
- name: TEMPORAL_NAMESPACE
  value: {{ .Values.temporal.namespace | quote }}
- name: TEMPORAL_TASK_QUEUE
  value: {{ .Values.temporal.taskQueue | quote }}
{{- with .Values.temporal.apiKeySecret.name }}
- name: TEMPORAL_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.temporal.apiKeySecret.key }}
{{- end }}
{{- if include "tlw.temporalTlsEnabled" . }}
- name: TEMPORAL_TLS
  value: "true"
{{- end }}
{{- if .Values.temporal.tls.clientCertificateSecret }}
- name: TEMPORAL_TLS_CERT_PATH
  value: /etc/temporal-tls/client/tls.crt
- name: TEMPORAL_TLS_KEY_PATH
  value: /etc/temporal-tls/client/tls.key
{{- end }}
{{- if .Values.temporal.tls.caSecret }}
- name: TEMPORAL_TLS_CA_PATH
  value: /etc/temporal-tls/ca/ca.crt
{{- end }}
{{- with .Values.temporal.tls.serverName }}
- name: TEMPORAL_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "tlw.temporalVolumeMounts" -}}
{{- if .Values.temporal.tls.clientCertificateSecret }}
- name: temporal-tls-client
  mountPath: /etc/temporal-tls/client
  readOnly: true
{{- end }}
{{- if .Values.temporal.tls.caSecret }}
- name: temporal-tls-ca
  mountPath: /etc/temporal-tls/ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "tlw.temporalVolumes" -}}
{{- with .Values.temporal.tls.clientCertificateSecret }}
- name: temporal-tls-client
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with .Values.temporal.tls.caSecret }}
- name: temporal-tls-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0444
{{- end }}
{{- end -}}

{{/* The worker's accounts for the TokenRequest API, by namespace: {namespace: [name, ...]}. */}}
{{- define "tlw.tokenAccountsByNamespace" -}}
{{- $byNamespace := dict -}}
{{- range .Values.serviceAccountTokens -}}
{{- $names := get $byNamespace .namespace | default list -}}
{{- $_ := set $byNamespace .namespace (append $names .name | uniq | sortAlpha) -}}
{{- end -}}
{{- toJson $byNamespace -}}
{{- end -}}

{{/*
  Fails unless the value at `path` is empty or a reference (env:NAME, file:/path), as
  shared/settings.ts requires. The message never repeats the value: it may be the secret itself.
*/}}
{{- define "tlw.checkReference" -}}
{{- if and .value (not (regexMatch "^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+)$" .value)) -}}
{{- fail (printf "%s: must be env:NAME or file:/path, a reference to the secret, never the secret itself" .path) -}}
{{- end -}}
{{- end -}}
