{{- define "kube-proxy.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kube-proxy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kube-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kube-proxy.labels" -}}
{{ include "kube-proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: kube-proxy
app.kubernetes.io/part-of: kubenode
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "kube-proxy.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "kube-proxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "kube-proxy.fullname" .) -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The KubeProxyConfiguration file, from .Values.config. */}}
{{- define "kube-proxy.config" -}}
{{- $c := .Values.config -}}
apiVersion: kubeproxy.config.kubenode.io/v1alpha1
kind: KubeProxyConfiguration
mode: {{ $c.mode | quote }}
{{- with $c.clusterCIDR }}
clusterCIDR: {{ . | quote }}
{{- end }}
nodePortAddresses: {{ $c.nodePortAddresses | toJson }}
configSyncPeriod: {{ $c.configSyncPeriod | quote }}
healthzBindAddress: {{ printf "0.0.0.0:%v" .Values.healthz.port | quote }}
metricsBindAddress: {{ printf "%s:%v" .Values.metrics.bindAddress .Values.metrics.port | quote }}
clientConnection:
  qps: {{ $c.clientConnection.qps }}
  burst: {{ $c.clientConnection.burst }}
ipvs:
  scheduler: {{ $c.ipvs.scheduler | quote }}
  syncPeriod: {{ $c.ipvs.syncPeriod | quote }}
  minSyncPeriod: {{ $c.ipvs.minSyncPeriod | quote }}
  strictARP: {{ $c.ipvs.strictARP }}
  {{- with $c.ipvs.excludeCIDRs }}
  excludeCIDRs: {{ . | toJson }}
  {{- end }}
nftables:
  syncPeriod: {{ $c.nftables.syncPeriod | quote }}
  minSyncPeriod: {{ $c.nftables.minSyncPeriod | quote }}
  masqueradeBit: {{ $c.nftables.masqueradeBit }}
  masqueradeAll: {{ $c.nftables.masqueradeAll }}
conntrack:
  maxPerCore: {{ $c.conntrack.maxPerCore }}
  min: {{ $c.conntrack.min }}
  tcpEstablishedTimeout: {{ $c.conntrack.tcpEstablishedTimeout | quote }}
  tcpCloseWaitTimeout: {{ $c.conntrack.tcpCloseWaitTimeout | quote }}
oomScoreAdj: {{ $c.oomScoreAdj }}
logging:
  format: {{ $c.logging.format | quote }}
  verbosity: {{ $c.logging.verbosity }}
{{- end -}}
