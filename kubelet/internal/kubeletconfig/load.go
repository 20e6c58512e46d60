// Package kubeletconfig loads the kubelet's configuration file: the kubenode format
// (kubelet.config.kubenode.io/v1alpha1) or upstream's kubelet.config.k8s.io/v1beta1, which it
// converts, warning about or refusing the fields kubenode does not implement.
package kubeletconfig

import (
	v1alpha1 "github.com/kubenode/kubenode/api/kubelet/v1alpha1"
	"github.com/kubenode/kubenode/common/config"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
)

// Load reads the configuration file at path, defaults and validates it. It returns warnings about
// ignored upstream fields, and an error listing every problem (decoding, unsupported fields and
// validation) with its field path and line.
func Load(path string) (*v1alpha1.KubeletConfiguration, []string, error) {
	return LoadWithOverrides(path, nil)
}

// LoadWithOverrides is Load with a hook that runs after decoding and before defaulting, where the
// command line overrides file values; validation then judges the final configuration. An empty path
// means no file: the configuration comes from override and defaults alone.
func LoadWithOverrides(path string, override func(*v1alpha1.KubeletConfiguration) error) (*v1alpha1.KubeletConfiguration, []string, error) {
	return format().LoadFile(path, override)
}

// format describes the file; a function rather than a package variable, so nothing is shared.
func format() config.Format[v1alpha1.KubeletConfiguration] {
	return config.Format[v1alpha1.KubeletConfiguration]{
		Component:          "kubelet",
		APIVersion:         v1alpha1.APIVersion,
		Kind:               v1alpha1.Kind,
		UpstreamAPIVersion: UpstreamAPIVersion,
		DecodeUpstream:     decodeUpstream,
		SetDefaults:        v1alpha1.SetDefaults,
		Validate:           v1alpha1.Validate,
	}
}

// decodeUpstream decodes kubelet.config.k8s.io/v1beta1 strictly and converts what kubenode supports.
func decodeUpstream(f *config.File, cfg *v1alpha1.KubeletConfiguration) ([]string, []config.Problem) {
	var up kubeletv1beta1.KubeletConfiguration
	problems := f.Decode(&up)
	warnings, unsupported := config.CheckForeign(&up, UpstreamFields(), f)
	fromUpstream(&up, cfg)
	return warnings, append(problems, unsupported...)
}

// fromUpstream copies the fields that UpstreamFields marks Supported. Zero upstream values mean
// "default" there as here, so they stay zero and SetDefaults fills them.
func fromUpstream(up *kubeletv1beta1.KubeletConfiguration, c *v1alpha1.KubeletConfiguration) {
	c.ContainerRuntimeEndpoint = up.ContainerRuntimeEndpoint
	c.ImageServiceEndpoint = up.ImageServiceEndpoint
	c.RuntimeRequestTimeout = up.RuntimeRequestTimeout
	c.StaticPodPath = up.StaticPodPath
	c.FileCheckFrequency = up.FileCheckFrequency
	c.SyncFrequency = up.SyncFrequency
	c.Address = up.Address
	c.Port = up.Port
	c.HealthzBindAddress = up.HealthzBindAddress
	c.HealthzPort = up.HealthzPort
	c.TLSCertFile = up.TLSCertFile
	c.TLSPrivateKeyFile = up.TLSPrivateKeyFile
	c.Authentication.X509.ClientCAFile = up.Authentication.X509.ClientCAFile
	c.Authentication.Webhook.Enabled = up.Authentication.Webhook.Enabled
	c.Authentication.Webhook.CacheTTL = up.Authentication.Webhook.CacheTTL
	c.Authentication.Anonymous.Enabled = up.Authentication.Anonymous.Enabled
	c.Authorization.Mode = string(up.Authorization.Mode)
	c.Authorization.Webhook.CacheAuthorizedTTL = up.Authorization.Webhook.CacheAuthorizedTTL
	c.Authorization.Webhook.CacheUnauthorizedTTL = up.Authorization.Webhook.CacheUnauthorizedTTL
	c.EnableDebuggingHandlers = up.EnableDebuggingHandlers
	c.ClusterDNS = up.ClusterDNS
	c.ClusterDomain = up.ClusterDomain
	c.ResolverConfig = up.ResolverConfig
	c.MaxPods = up.MaxPods
	c.PodPidsLimit = up.PodPidsLimit
	c.CgroupDriver = up.CgroupDriver
	c.CgroupRoot = up.CgroupRoot
	c.CgroupsPerQOS = up.CgroupsPerQOS
	c.SystemReserved = up.SystemReserved
	c.KubeReserved = up.KubeReserved
	c.EvictionHard = up.EvictionHard
	c.EvictionSoft = up.EvictionSoft
	c.EvictionSoftGracePeriod = up.EvictionSoftGracePeriod
	// Upstream's negative value ("defer to the pod", per its flag help) has meant a 1 s kill since
	// soft evictions stopped overriding longer pod grace periods, the same as 0.
	c.EvictionMaxPodGracePeriod = max(up.EvictionMaxPodGracePeriod, 0)
	c.EvictionPressureTransitionPeriod = up.EvictionPressureTransitionPeriod
	c.FailSwapOn = up.FailSwapOn
	c.NodeStatusUpdateFrequency = up.NodeStatusUpdateFrequency
	c.NodeStatusReportFrequency = up.NodeStatusReportFrequency
	c.NodeLeaseDurationSeconds = up.NodeLeaseDurationSeconds
	c.RegisterNode = up.RegisterNode
	for _, t := range up.RegisterWithTaints {
		c.RegisterWithTaints = append(c.RegisterWithTaints, v1alpha1.Taint{Key: t.Key, Value: t.Value, Effect: string(t.Effect)})
	}
	c.ProviderID = up.ProviderID
	c.SerializeImagePulls = up.SerializeImagePulls
	c.MaxParallelImagePulls = up.MaxParallelImagePulls
	c.ImageGCHighThresholdPercent = up.ImageGCHighThresholdPercent
	c.ImageGCLowThresholdPercent = up.ImageGCLowThresholdPercent
	c.ImageMinimumGCAge = up.ImageMinimumGCAge
	c.ContainerLogMaxSize = up.ContainerLogMaxSize
	c.ContainerLogMaxFiles = up.ContainerLogMaxFiles
	c.CrashLoopBackOff.MaxContainerRestartPeriod = up.CrashLoopBackOff.MaxContainerRestartPeriod
	c.ShutdownGracePeriod = up.ShutdownGracePeriod
	c.Logging.Format = up.Logging.Format
	c.Logging.Verbosity = uint32(up.Logging.Verbosity)
}
