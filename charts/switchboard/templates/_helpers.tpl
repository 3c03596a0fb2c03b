{{/* Names and labels shared by every object. */}}
{{- define "switchboard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "switchboard.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "switchboard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "switchboard.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default (include "switchboard.fullname" .) }}
{{- else -}}
{{ .Values.serviceAccount.name | default "default" }}
{{- end -}}
{{- end -}}

{{/* Redis host:port: the bundled instance's Service or the external address; empty when none. */}}
{{- define "switchboard.redisAddress" -}}
{{- if .Values.redis.bundled.enabled -}}
{{ include "switchboard.fullname" . }}-redis:6379
{{- else -}}
{{ .Values.redis.external.address }}
{{- end -}}
{{- end -}}

{{/* Seconds a terminating gateway pod gets: the preStop sleep, the drain, and a margin. */}}
{{- define "switchboard.grace" -}}
{{ add .Values.preStopSleepSeconds .Values.gateway.drainTimeoutSeconds 5 }}
{{- end -}}

{{/* The L2 members the agents put on their ring: the chart's cache servers
(stable StatefulSet names) and any listed in kvAgent.l2.members, comma-separated. */}}
{{- define "switchboard.l2Members" -}}
{{- $members := list -}}
{{- if .Values.kvServer.enabled -}}
{{- $name := printf "%s-kv-server" (include "switchboard.fullname" .) -}}
{{- range $i := until (int .Values.kvServer.replicas) -}}
{{- $members = append $members (printf "%s-%d.%s.%s.svc:%d" $name $i $name $.Release.Namespace (int $.Values.kvServer.port)) -}}
{{- end -}}
{{- end -}}
{{- join "," (concat $members .Values.kvAgent.l2.members) -}}
{{- end -}}
