package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Default values that SetDefaults fills in.
const (
	DefaultContainerRuntimeEndpoint   = "unix:///run/containerd/containerd.sock"
	DefaultRuntimeRequestTimeout      = 2 * time.Minute
	DefaultFileCheckFrequency         = 20 * time.Second
	DefaultSyncFrequency              = time.Minute
	DefaultAddress                    = "0.0.0.0"
	DefaultPort                       = 10250
	DefaultHealthzBindAddress         = "127.0.0.1"
	DefaultHealthzPort                = 10248
	DefaultResolverConfig             = "/etc/resolv.conf"
	DefaultMaxPods                    = 110
	DefaultCgroupDriver               = "cgroupfs"
	DefaultCgroupRoot                 = "/"
	DefaultNodeStatusUpdateFrequency  = 10 * time.Second
	DefaultNodeStatusReportFrequency  = 5 * time.Minute
	DefaultNodeLeaseDurationSeconds   = 40
	DefaultImageGCHighThreshold       = 85
	DefaultImageGCLowThreshold        = 80
	DefaultImageMinimumGCAge          = 2 * time.Minute
	DefaultEvictionPressureTransition = 5 * time.Minute
	DefaultContainerLogMaxSize        = "10Mi"
	DefaultContainerLogMaxFiles       = 5
	DefaultInitialRestartPeriod       = 10 * time.Second
	DefaultMaxRestartPeriod           = 300 * time.Second
	DefaultWebhookCacheTTL            = 2 * time.Minute
	DefaultCacheAuthorizedTTL         = 5 * time.Minute
	DefaultCacheUnauthorizedTTL       = 30 * time.Second
	DefaultLoggingFormat              = "text"
)

// DefaultEvictionHard returns the hard eviction thresholds used when evictionHard is not set.
func DefaultEvictionHard() map[string]string {
	return map[string]string{
		"memory.available":  "100Mi",
		"nodefs.available":  "10%",
		"nodefs.inodesFree": "5%",
		"imagefs.available": "15%",
	}
}

// EffectiveMaxParallelPodStarts is the start-call cap for maxParallelPodStarts v on a machine with
// cpus CPUs; 0 means no cap. Unset scales with the CPUs: pod start-up is CPU-bound in the runtime
// (runc, shims, CNI plugins), and a few calls per CPU keep every CPU busy.
func EffectiveMaxParallelPodStarts(v *int32, cpus int) int {
	if v != nil {
		return int(*v)
	}
	return max(3*cpus, 4)
}

// SetDefaults fills every unset field of c with its default. It is idempotent.
func SetDefaults(c *KubeletConfiguration) {
	c.APIVersion = APIVersion
	c.Kind = Kind
	str(&c.ContainerRuntimeEndpoint, DefaultContainerRuntimeEndpoint)
	str(&c.ImageServiceEndpoint, c.ContainerRuntimeEndpoint)
	dur(&c.RuntimeRequestTimeout, DefaultRuntimeRequestTimeout)
	dur(&c.FileCheckFrequency, DefaultFileCheckFrequency)
	dur(&c.SyncFrequency, DefaultSyncFrequency)
	str(&c.Address, DefaultAddress)
	i32(&c.Port, DefaultPort)
	str(&c.HealthzBindAddress, DefaultHealthzBindAddress)
	ptr(&c.HealthzPort, DefaultHealthzPort)
	ptr(&c.EnableDebuggingHandlers, true)

	ptr(&c.Authentication.Webhook.Enabled, true)
	dur(&c.Authentication.Webhook.CacheTTL, DefaultWebhookCacheTTL)
	ptr(&c.Authentication.Anonymous.Enabled, false)
	str(&c.Authorization.Mode, AuthorizationModeWebhook)
	dur(&c.Authorization.Webhook.CacheAuthorizedTTL, DefaultCacheAuthorizedTTL)
	dur(&c.Authorization.Webhook.CacheUnauthorizedTTL, DefaultCacheUnauthorizedTTL)

	ptr(&c.ResolverConfig, DefaultResolverConfig)
	i32(&c.MaxPods, DefaultMaxPods)
	ptr(&c.PodPidsLimit, -1)
	str(&c.CgroupDriver, DefaultCgroupDriver)
	str(&c.CgroupRoot, DefaultCgroupRoot)
	ptr(&c.CgroupsPerQOS, true)
	if c.EvictionHard == nil {
		c.EvictionHard = DefaultEvictionHard()
	}
	dur(&c.EvictionPressureTransitionPeriod, DefaultEvictionPressureTransition)
	ptr(&c.FailSwapOn, true)

	dur(&c.NodeStatusUpdateFrequency, DefaultNodeStatusUpdateFrequency)
	dur(&c.NodeStatusReportFrequency, DefaultNodeStatusReportFrequency)
	i32(&c.NodeLeaseDurationSeconds, DefaultNodeLeaseDurationSeconds)
	ptr(&c.RegisterNode, true)

	ptr(&c.SerializeImagePulls, true)
	ptr(&c.ImageGCHighThresholdPercent, DefaultImageGCHighThreshold)
	ptr(&c.ImageGCLowThresholdPercent, DefaultImageGCLowThreshold)
	dur(&c.ImageMinimumGCAge, DefaultImageMinimumGCAge)
	str(&c.ContainerLogMaxSize, DefaultContainerLogMaxSize)
	ptr(&c.ContainerLogMaxFiles, DefaultContainerLogMaxFiles)
	if c.CrashLoopBackOff.InitialContainerRestartPeriod == nil {
		c.CrashLoopBackOff.InitialContainerRestartPeriod = &metav1.Duration{Duration: DefaultInitialRestartPeriod}
	}
	if c.CrashLoopBackOff.MaxContainerRestartPeriod == nil {
		c.CrashLoopBackOff.MaxContainerRestartPeriod = &metav1.Duration{Duration: DefaultMaxRestartPeriod}
	}
	str(&c.Logging.Format, DefaultLoggingFormat)
}

func str(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func i32(p *int32, v int32) {
	if *p == 0 {
		*p = v
	}
}

func dur(p *metav1.Duration, v time.Duration) {
	if p.Duration == 0 {
		p.Duration = v
	}
}

func ptr[T any](p **T, v T) {
	if *p == nil {
		*p = &v
	}
}
