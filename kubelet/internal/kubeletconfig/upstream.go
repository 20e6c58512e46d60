package kubeletconfig

import (
	"github.com/kubenode/kubenode/common/config"
)

// UpstreamAPIVersion is the apiVersion of the upstream kubelet configuration that Load converts.
const UpstreamAPIVersion = "kubelet.config.k8s.io/v1beta1"

// UpstreamFields classifies every field of upstream kubelet.config.k8s.io/v1beta1
// KubeletConfiguration: carried over, ignored with a warning when set, or an error when set.
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
		s("containerRuntimeEndpoint"), s("imageServiceEndpoint"), s("runtimeRequestTimeout"),
		s("staticPodPath"), s("fileCheckFrequency"), s("syncFrequency"),
		s("address"), s("port"), s("healthzBindAddress"), s("healthzPort"),
		s("tlsCertFile"), s("tlsPrivateKeyFile"),
		s("authentication.x509.clientCAFile"), s("authentication.webhook.enabled"), s("authentication.webhook.cacheTTL"),
		s("authentication.anonymous.enabled"),
		s("authorization.mode"), s("authorization.webhook.cacheAuthorizedTTL"), s("authorization.webhook.cacheUnauthorizedTTL"),
		s("enableDebuggingHandlers"), s("clusterDNS"), s("clusterDomain"), s("resolvConf"),
		s("maxPods"), s("podPidsLimit"), s("cgroupDriver"), s("cgroupRoot"), s("cgroupsPerQOS"),
		s("systemReserved"), s("kubeReserved"), s("evictionHard"), s("evictionSoft"), s("evictionSoftGracePeriod"),
		s("evictionMaxPodGracePeriod"), s("failSwapOn"),
		s("nodeStatusUpdateFrequency"), s("nodeStatusReportFrequency"), s("nodeLeaseDurationSeconds"),
		s("registerNode"), s("registerWithTaints"), s("providerID"),
		s("serializeImagePulls"), s("maxParallelImagePulls"), s("imageGCHighThresholdPercent"), s("imageGCLowThresholdPercent"),
		s("imageMinimumGCAge"), s("evictionPressureTransitionPeriod"),
		s("containerLogMaxSize"), s("containerLogMaxFiles"), s("crashLoopBackOff.maxContainerRestartPeriod"),
		s("shutdownGracePeriod"), s("logging.format"), s("logging.verbosity"),

		warn("rotateCertificates", "the kubeconfig's client certificate is used as it is; renew it outside the kubelet"),
		warn("httpCheckFrequency", "static pods from a URL are not supported"),
		warn("registryPullQPS", "image pulls are not rate limited"),
		warn("registryBurst", "image pulls are not rate limited"),
		warn("eventRecordQPS", "event rate limiting is fixed"),
		warn("eventBurst", "event rate limiting is fixed"),
		warn("enableContentionProfiling", "profiling is not served"),
		warn("enableProfilingHandler", "profiling is not served"),
		warn("enableDebugFlagsHandler", "the debug flags handler is not served"),
		warn("enableSystemLogHandler", "the node log handler is not served"),
		warn("enableSystemLogQuery", "the node log query is not served"),
		warn("oomScoreAdj", "the kubelet does not change its own oom_score_adj"),
		warn("streamingConnectionIdleTimeout", "streaming connections use a fixed idle timeout"),
		warn("imageMaximumGCAge", "image GC removes unused images by disk usage only, never by age alone"),
		warn("volumeStatsAggPeriod", "volume stats are computed on request"),
		warn("kubeletCgroups", "the kubelet does not move itself into a cgroup"),
		warn("systemCgroups", "system processes are not moved into a cgroup"),
		warn("systemReservedCgroup", "node allocatable is enforced on the pods cgroup only"),
		warn("kubeReservedCgroup", "node allocatable is enforced on the pods cgroup only"),
		warn("cpuManagerReconcilePeriod", "there is no CPU manager"),
		warn("singleProcessOOMKill", "the kernel's cgroup OOM behaviour is left as it is"),
		warn("topologyManagerScope", "there is no topology manager", "container"),
		warn("hairpinMode", "the CNI plugin configures hairpin traffic"),
		warn("podCIDR", "the CNI plugin assigns pod addresses"),
		warn("cpuCFSQuotaPeriod", "the kernel's default CFS period (100ms) is used", "100ms"),
		warn("nodeStatusMaxImages", "node status lists a fixed number of images"),
		warn("maxOpenFiles", "the kubelet's file limit is left to the service manager"),
		warn("contentType", "the API client's content type is fixed"),
		warn("kubeAPIQPS", "the API client's rate limits are fixed"),
		warn("kubeAPIBurst", "the API client's rate limits are fixed"),
		warn("mergeDefaultEvictionSettings", "a set evictionHard replaces the defaults"),
		warn("enableControllerAttachDetach", "only node-local volume types are supported"),
		warn("volumePluginDir", "flexvolume plugins are not supported"),
		warn("makeIPTablesUtilChains", "the kubelet does not write iptables rules"),
		warn("iptablesMasqueradeBit", "the kubelet does not write iptables rules"),
		warn("iptablesDropBit", "the kubelet does not write iptables rules"),
		warn("featureGates", "kubenode has no feature gates; features it has are always on"),
		warn("containerLogMaxWorkers", "log rotation runs in one worker"),
		warn("containerLogMonitorInterval", "log rotation checks on a fixed interval"),
		warn("configMapAndSecretChangeDetectionStrategy", "configMaps and secrets are watched"),
		warn("showHiddenMetricsForVersion", "there are no hidden metrics"),
		warn("kernelMemcgNotification", "memory pressure is polled"),
		warn("logging.flushFrequency", "logs are written unbuffered"),
		warn("logging.vmodule", "per-file verbosity is not supported"),
		warn("logging.options", "format options are fixed"),
		warn("shutdownGracePeriodCriticalPods", "all pods share shutdownGracePeriod"),
		warn("memoryThrottlingFactor", "memory QoS is not implemented"),
		warn("memoryReservationPolicy", "memory QoS is not implemented"),
		warn("tracing", "OpenTelemetry tracing is not implemented"),
		warn("localStorageCapacityIsolation", "ephemeral storage is accounted as always", true),
		warn("failCgroupV1", "cgroup v1 and v2 are both supported"),

		fail("enableServer", "the kubelet API server (port 10250 by default) always runs", true),
		fail("podLogsDir", "pod logs are written under /var/log/pods", "/var/log/pods"),
		fail("staticPodURL", "static pods are read from staticPodPath only"),
		fail("staticPodURLHeader", "static pods are read from staticPodPath only"),
		fail("readOnlyPort", "the unauthenticated read-only port is not served; use the authenticated port"),
		fail("tlsCipherSuites", "the TLS configuration is Go's default; a restriction cannot be honoured"),
		fail("tlsMinVersion", "the TLS configuration is Go's default (TLS 1.2 minimum)", "VersionTLS12"),
		fail("tlsCurvePreferences", "the TLS configuration is Go's default"),
		fail("serverTLSBootstrap", "serving certificates are not requested through CSRs; set tlsCertFile/tlsPrivateKeyFile"),
		fail("imagePullCredentialsVerificationPolicy", "pulled-image credential verification is not implemented", "NeverVerify"),
		fail("preloadedImagesVerificationAllowlist", "pulled-image credential verification is not implemented"),
		fail("cpuManagerPolicy", "there is no CPU manager (policy none only)", "none"),
		fail("cpuManagerPolicyOptions", "there is no CPU manager"),
		fail("memoryManagerPolicy", "there is no memory manager (policy None only)", "None"),
		fail("topologyManagerPolicy", "there is no topology manager (policy none only)", "none"),
		fail("topologyManagerPolicyOptions", "there is no topology manager"),
		fail("qosReserved", "memory QoS reservation is not implemented"),
		fail("runOnce", "the kubelet always runs as a daemon"),
		fail("cpuCFSQuota", "CPU limits are always enforced with CFS quota", true),
		fail("evictionMinimumReclaim", "eviction stops once a threshold is no longer crossed; a minimum reclaim is not implemented"),
		fail("podsPerCore", "use maxPods"),
		fail("protectKernelDefaults", "kernel tunables are not checked"),
		fail("memorySwap", "swap for pods is not supported", map[string]any{"swapBehavior": "NoSwap"}),
		fail("reservedSystemCPUs", "there is no CPU manager"),
		fail("enforceNodeAllocatable", "node allocatable is enforced on pods only", []string{"pods"}),
		fail("allowedUnsafeSysctls", "unsafe sysctls are not allowed"),
		fail("defaultPodSysctls", "pod sysctls are not defaulted"),
		fail("shutdownGracePeriodByPodPriority", "all pods share shutdownGracePeriod"),
		fail("reservedMemory", "there is no memory manager"),
		fail("seccompDefault", "pods without a seccomp profile run Unconfined, as upstream's default", false),
		fail("userNamespaces", "user namespaces are not supported"),
	}
}
