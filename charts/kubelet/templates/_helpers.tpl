{{- define "kubelet.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubelet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubelet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubelet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubelet.labels" -}}
{{ include "kubelet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: kubelet
app.kubernetes.io/part-of: kubenode
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The KubeletConfiguration file, from .Values.config. */}}
{{- define "kubelet.config" -}}
{{- $c := .Values.config -}}
apiVersion: kubelet.config.kubenode.io/v1alpha1
kind: KubeletConfiguration
containerRuntimeEndpoint: {{ $c.containerRuntimeEndpoint | quote }}
cgroupDriver: {{ $c.cgroupDriver | quote }}
{{- with $c.clusterDNS }}
clusterDNS: {{ . | toJson }}
{{- end }}
clusterDomain: {{ $c.clusterDomain | quote }}
maxPods: {{ $c.maxPods }}
authentication:
  x509:
    clientCAFile: {{ $c.authentication.clientCAFile | quote }}
  webhook:
    enabled: {{ $c.authentication.webhookEnabled }}
  anonymous:
    enabled: {{ $c.authentication.anonymous }}
authorization:
  mode: {{ $c.authorization.mode | quote }}
{{- with $c.evictionHard }}
evictionHard:
  {{- range $k, $v := . }}
  {{ $k }}: {{ $v | quote }}
  {{- end }}
{{- end }}
serializeImagePulls: {{ $c.serializeImagePulls }}
shutdownGracePeriod: {{ $c.shutdownGracePeriod | quote }}
logging:
  format: {{ $c.logging.format | quote }}
  verbosity: {{ $c.logging.verbosity }}
{{- end -}}
