package proxyconfig

import (
	"github.com/kubenode/kubenode/common/config"
)

// UpstreamAPIVersion is the apiVersion of the upstream kube-proxy configuration that Load converts.
const UpstreamAPIVersion = "kubeproxy.config.k8s.io/v1alpha1"

// UpstreamFields classifies every field of upstream kubeproxy.config.k8s.io/v1alpha1
// KubeProxyConfiguration: carried over, ignored with a warning when set, or an error when set.
// api/README.md lists it; a test keeps it complete when the upstream type grows.
func UpstreamFields() []config.ForeignField {
	s := func(path string) config.ForeignField {
		return config.ForeignField{Path: path, Handling: config.Supported}
	}
	warn := func(path, reason string, accept ...any) config.ForeignField {
		return config.ForeignField{Path: path, Handling: config.Ignored, Reason: reason, Accept: accept}
	}
	fail := func(path, reason string, accept ...any) config.ForeignField {
		return config.ForeignField{Path: path, Handling: config.Unsupported, Reason: reason, Accept: accept}
	}
	return []config.ForeignField{
		s("clientConnection.kubeconfig"), s("clientConnection.contentType"), s("clientConnection.qps"), s("clientConnection.burst"),
		s("logging.format"), s("logging.verbosity"),
		s("hostnameOverride"), s("bindAddress"), s("healthzBindAddress"), s("metricsBindAddress"), s("enableProfiling"),
		s("mode"), s("clusterCIDR"), s("nodePortAddresses"), s("configSyncPeriod"), s("oomScoreAdj"),
		s("ipvs.syncPeriod"), s("ipvs.minSyncPeriod"), s("ipvs.scheduler"), s("ipvs.excludeCIDRs"), s("ipvs.strictARP"),
		s("ipvs.tcpTimeout"), s("ipvs.tcpFinTimeout"), s("ipvs.udpTimeout"),
		s("nftables.masqueradeBit"), s("nftables.masqueradeAll"), s("nftables.syncPeriod"), s("nftables.minSyncPeriod"),
		s("conntrack.maxPerCore"), s("conntrack.min"), s("conntrack.tcpEstablishedTimeout"), s("conntrack.tcpCloseWaitTimeout"),
		s("conntrack.udpTimeout"), s("conntrack.udpStreamTimeout"),

		warn("featureGates", "kubenode has no feature gates; features it has are always on"),
		warn("clientConnection.acceptContentTypes", "the API client's accepted content types are fixed"),
		warn("logging.flushFrequency", "logs are written unbuffered"),
		warn("logging.vmodule", "per-file verbosity is not supported"),
		warn("logging.options", "format options are fixed"),
		warn("bindAddressHardFail", "a failure to bind the healthz or metrics port always stops kube-proxy", true),
		warn("showHiddenMetricsForVersion", "there are no hidden metrics"),
		warn("iptables", "the iptables mode is not implemented, so its settings do not apply"),
		warn("winkernel", "Windows is not supported"),
		warn("conntrack.tcpBeLiberal", "nf_conntrack_tcp_be_liberal is left as it is"),
		warn("portRange", "upstream ignores it too"),
		warn("windowsRunAsService", "Windows is not supported"),
		warn("detectLocal", "only detectLocalMode ClusterCIDR is supported, which does not use it"),

		fail("detectLocalMode", "local traffic is detected by clusterCIDR only", "ClusterCIDR"),
	}
}
