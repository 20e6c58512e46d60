// Package kubeletconfig loads the kubelet's configuration file: the kubenode format
// (kubelet.config.kubenode.io/v1alpha1) or upstream's kubelet.config.k8s.io/v1beta1, which it
// converts, warning about or refusing the fields kubenode does not implement.
package kubeletconfig

import (
	"fmt"

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
	cfg := &v1alpha1.KubeletConfiguration{}
	var (
		warnings []string
		problems []config.Problem
		line     func(string) int
	)
	source := "kubelet configuration from flags"
	if path != "" {
		source = path
		f, err := config.Read(path)
		if err != nil {
			return nil, nil, err
		}
		line = f.Line
		warnings, problems = decode(f, cfg)
	}
	var fromFlags func(string) bool
	if override != nil {
		snap, err := config.Take(cfg)
		if err != nil {
			return nil, warnings, err
		}
		if err := override(cfg); err != nil {
			return nil, warnings, err
		}
		if fromFlags, err = snap.Changed(cfg); err != nil {
			return nil, warnings, err
		}
	}
	v1alpha1.SetDefaults(cfg)
	problems = append(problems, config.FieldProblems(v1alpha1.Validate(cfg), problems, line, fromFlags)...)
	if err := config.NewError(source, problems); err != nil {
		return nil, warnings, err
	}
	return cfg, warnings, nil
}

// decode dispatches on apiVersion and kind.
func decode(f *config.File, cfg *v1alpha1.KubeletConfiguration) ([]string, []config.Problem) {
	apiVersion, kind := f.TypeMeta()
	switch {
	case apiVersion == v1alpha1.APIVersion && kind == v1alpha1.Kind:
		return nil, f.Decode(cfg)
	case apiVersion == UpstreamAPIVersion && kind == v1alpha1.Kind:
		var up kubeletv1beta1.KubeletConfiguration
		problems := f.Decode(&up)
		warnings, unsupported := config.CheckForeign(&up, UpstreamFields(), f)
		fromUpstream(&up, cfg)
		return warnings, append(problems, unsupported...)
	}
	msg := fmt.Sprintf("apiVersion %q with kind %q is not a kubelet configuration; use apiVersion %s or %s with kind %s",
		apiVersion, kind, v1alpha1.APIVersion, UpstreamAPIVersion, v1alpha1.Kind)
	if apiVersion == "" || kind == "" {
		msg = fmt.Sprintf("apiVersion and kind are required: apiVersion %s (or %s), kind %s", v1alpha1.APIVersion, UpstreamAPIVersion, v1alpha1.Kind)
	}
	return nil, []config.Problem{{Field: "apiVersion", Line: f.Line("apiVersion"), Message: msg}}
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
	c.ImageGCHighThresholdPercent = up.ImageGCHighThresholdPercent
	c.ImageGCLowThresholdPercent = up.ImageGCLowThresholdPercent
	c.ContainerLogMaxSize = up.ContainerLogMaxSize
	c.ContainerLogMaxFiles = up.ContainerLogMaxFiles
	c.CrashLoopBackOff.MaxContainerRestartPeriod = up.CrashLoopBackOff.MaxContainerRestartPeriod
	c.ShutdownGracePeriod = up.ShutdownGracePeriod
	c.Logging.Format = up.Logging.Format
	c.Logging.Verbosity = uint32(up.Logging.Verbosity)
}
