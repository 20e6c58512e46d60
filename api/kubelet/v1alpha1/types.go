// Package v1alpha1 is version v1alpha1 of the kubenode kubelet's configuration file, group
// kubelet.config.kubenode.io. Field names follow upstream kubelet.config.k8s.io/v1beta1 wherever the
// meaning is the same, so an operator's knowledge (and most of a kubeadm-written file) carries over.
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// GroupName is the API group of the kubelet's configuration.
	GroupName = "kubelet.config.kubenode.io"
	// Version is this package's version of the group.
	Version = "v1alpha1"
	// APIVersion is the apiVersion a file of this version carries.
	APIVersion = GroupName + "/" + Version
	// Kind is the kind of the configuration object.
	Kind = "KubeletConfiguration"
)

// KubeletConfiguration configures the kubenode kubelet. Unset fields take the defaults that
// SetDefaults documents; Validate lists every problem.
type KubeletConfiguration struct {
	metav1.TypeMeta `json:",inline"`

	// ContainerRuntimeEndpoint is the CRI runtime service endpoint, a unix socket URL.
	// Default: "unix:///run/containerd/containerd.sock".
	ContainerRuntimeEndpoint string `json:"containerRuntimeEndpoint,omitempty"`
	// ImageServiceEndpoint is the CRI image service endpoint. Default: ContainerRuntimeEndpoint.
	ImageServiceEndpoint string `json:"imageServiceEndpoint,omitempty"`
	// RuntimeRequestTimeout bounds every CRI call except image pulls, so one hung call cannot stall
	// the node. Default: 2m.
	RuntimeRequestTimeout metav1.Duration `json:"runtimeRequestTimeout,omitempty"`

	// StaticPodPath is a directory of pod manifests that the kubelet runs without the API server
	// (mirror pods show them in the API). Empty disables static pods. Default: "".
	StaticPodPath string `json:"staticPodPath,omitempty"`
	// FileCheckFrequency is how often StaticPodPath is re-read. Default: 20s.
	FileCheckFrequency metav1.Duration `json:"fileCheckFrequency,omitempty"`
	// SyncFrequency is the longest time between two syncs of a running pod. Default: 1m.
	SyncFrequency metav1.Duration `json:"syncFrequency,omitempty"`

	// Address is the IP the kubelet's API server (logs, exec, port-forward, stats) listens on.
	// Default: "0.0.0.0".
	Address string `json:"address,omitempty"`
	// Port is the port of the kubelet's API server. Default: 10250.
	Port int32 `json:"port,omitempty"`
	// HealthzBindAddress is the IP the /healthz endpoint listens on. Default: "127.0.0.1".
	HealthzBindAddress string `json:"healthzBindAddress,omitempty"`
	// HealthzPort is the port of the /healthz endpoint; 0 disables it. Default: 10248.
	HealthzPort *int32 `json:"healthzPort,omitempty"`
	// TLSCertFile is the serving certificate (PEM) of the kubelet's API server. With
	// TLSPrivateKeyFile; when both are empty the kubelet makes a self-signed certificate.
	TLSCertFile string `json:"tlsCertFile,omitempty"`
	// TLSPrivateKeyFile is the private key (PEM) matching TLSCertFile.
	TLSPrivateKeyFile string `json:"tlsPrivateKeyFile,omitempty"`
	// Authentication says how requests to the kubelet's API server are authenticated.
	Authentication KubeletAuthentication `json:"authentication"`
	// Authorization says how authenticated requests to the kubelet's API server are authorized.
	Authorization KubeletAuthorization `json:"authorization"`
	// EnableDebuggingHandlers enables the logs, exec, attach, port-forward and run endpoints of the
	// kubelet's API server. Default: true.
	EnableDebuggingHandlers *bool `json:"enableDebuggingHandlers,omitempty"`

	// ClusterDNS lists the IPs of the cluster's DNS servers, written into the resolv.conf of pods
	// with dnsPolicy ClusterFirst. Default: none (pods fall back to the node's resolvers).
	ClusterDNS []string `json:"clusterDNS,omitempty"`
	// ClusterDomain is the cluster's DNS domain; pods search "<ns>.svc.<domain>", "svc.<domain>"
	// and "<domain>". Default: "" (no cluster search domains).
	ClusterDomain string `json:"clusterDomain,omitempty"`
	// ResolverConfig is the resolver file that pods with dnsPolicy Default (and ClusterFirst
	// without ClusterDNS) inherit; "" gives such pods an empty resolv.conf. Default: "/etc/resolv.conf".
	ResolverConfig *string `json:"resolvConf,omitempty"`

	// MaxPods is the number of pods the node admits. Default: 110.
	MaxPods int32 `json:"maxPods,omitempty"`
	// PodPidsLimit is the most processes one pod may run; -1 means unlimited. Default: -1.
	PodPidsLimit *int64 `json:"podPidsLimit,omitempty"`
	// CgroupDriver is how pod cgroups are made: "cgroupfs" (direct cgroupfs writes) or "systemd"
	// (slices). It must match the container runtime's setting. Default: "cgroupfs".
	CgroupDriver string `json:"cgroupDriver,omitempty"`
	// CgroupRoot is the cgroup under which the kubelet makes the pod hierarchy. Default: "/".
	CgroupRoot string `json:"cgroupRoot,omitempty"`
	// CgroupsPerQOS makes the kubepods/burstable/besteffort hierarchy and per-pod cgroups, which pod
	// resource limits and eviction rely on. Default: true.
	CgroupsPerQOS *bool `json:"cgroupsPerQOS,omitempty"`
	// SystemReserved reserves resources (cpu, memory, ephemeral-storage, pid) for the operating
	// system; allocatable = capacity - systemReserved - kubeReserved - evictionHard. Default: none.
	SystemReserved map[string]string `json:"systemReserved,omitempty"`
	// KubeReserved reserves resources (cpu, memory, ephemeral-storage, pid) for Kubernetes daemons.
	// Default: none.
	KubeReserved map[string]string `json:"kubeReserved,omitempty"`
	// EvictionHard maps eviction signals (memory.available, nodefs.available, nodefs.inodesFree,
	// imagefs.available, imagefs.inodesFree, pid.available) to thresholds, a quantity ("100Mi") or a
	// percentage ("10%"); while one is crossed the node reports the matching pressure condition and
	// evicts one pod every 10s (after reclaiming unused images for disk signals). Setting the field replaces the whole
	// default map. Default: memory.available<100Mi, nodefs.available<10%, nodefs.inodesFree<5%,
	// imagefs.available<15%.
	EvictionHard map[string]string `json:"evictionHard,omitempty"`
	// EvictionSoft maps eviction signals to soft thresholds, same signals and syntax as
	// EvictionHard. A crossed soft threshold sets the pressure condition at once, but evicts only
	// after it stayed crossed for its EvictionSoftGracePeriod, and kills the pod with a grace period
	// of at most EvictionMaxPodGracePeriod. Default: none.
	EvictionSoft map[string]string `json:"evictionSoft,omitempty"`
	// EvictionSoftGracePeriod maps each signal of EvictionSoft to how long its threshold must stay
	// crossed before a pod is evicted ("1m30s"). Every soft signal needs one. Default: none.
	EvictionSoftGracePeriod map[string]string `json:"evictionSoftGracePeriod,omitempty"`
	// EvictionMaxPodGracePeriod caps, in seconds, the termination grace period of a pod evicted for
	// a soft threshold: the pod gets min(its terminationGracePeriodSeconds, this), at least 1 s.
	// As upstream, 0 means 1 s, not the pod's own period. Default: 0.
	EvictionMaxPodGracePeriod int32 `json:"evictionMaxPodGracePeriod,omitempty"`
	// EvictionPressureTransitionPeriod is how long a pressure condition (MemoryPressure,
	// DiskPressure, PIDPressure) stays True after its threshold was last crossed, so the node does
	// not flap between admitting and rejecting pods. Default: 5m.
	EvictionPressureTransitionPeriod metav1.Duration `json:"evictionPressureTransitionPeriod,omitempty"`
	// FailSwapOn makes the kubelet refuse to start when swap is on. Default: true.
	FailSwapOn *bool `json:"failSwapOn,omitempty"`

	// NodeStatusUpdateFrequency is how often the kubelet computes node status and posts it when it
	// changed. Default: 10s.
	NodeStatusUpdateFrequency metav1.Duration `json:"nodeStatusUpdateFrequency,omitempty"`
	// NodeStatusReportFrequency is how often the node status is posted even when nothing changed.
	// Default: 5m.
	NodeStatusReportFrequency metav1.Duration `json:"nodeStatusReportFrequency,omitempty"`
	// NodeLeaseDurationSeconds is the duration of the node's Lease in kube-node-lease; the kubelet
	// renews it every quarter of this. Default: 40.
	NodeLeaseDurationSeconds int32 `json:"nodeLeaseDurationSeconds,omitempty"`
	// RegisterNode makes the kubelet create its Node object. Default: true.
	RegisterNode *bool `json:"registerNode,omitempty"`
	// RegisterWithTaints are taints the Node is created with (ignored when RegisterNode is false).
	RegisterWithTaints []Taint `json:"registerWithTaints,omitempty"`
	// NodeLabels are labels the Node is created with, besides the well-known ones the kubelet sets.
	NodeLabels map[string]string `json:"nodeLabels,omitempty"`
	// ProviderID is the node's ID in the cloud provider's database, written to spec.providerID.
	ProviderID string `json:"providerID,omitempty"`

	// SerializeImagePulls pulls one image at a time. Default: true.
	SerializeImagePulls *bool `json:"serializeImagePulls,omitempty"`
	// MaxParallelImagePulls caps the image pulls in flight when SerializeImagePulls is false; it
	// must be unset or 1 when SerializeImagePulls is true. Default: unset (no cap).
	MaxParallelImagePulls *int32 `json:"maxParallelImagePulls,omitempty"`
	// MaxParallelPodStarts caps the runtime calls that start pods -- RunPodSandbox, and
	// CreateContainer with its StartContainer -- in flight at once. Waiting calls are granted in
	// the order their pods asked, so in a burst pods come up one after another instead of all
	// late together; image pulls, volume set-up and lifecycle hooks are outside the cap.
	// 0 means no cap. Default: unset, 3 per CPU and at least 4.
	MaxParallelPodStarts *int32 `json:"maxParallelPodStarts,omitempty"`
	// ImageGCHighThresholdPercent is the image filesystem usage (percent) above which image garbage
	// collection always runs; 100 disables it. Default: 85.
	ImageGCHighThresholdPercent *int32 `json:"imageGCHighThresholdPercent,omitempty"`
	// ImageGCLowThresholdPercent is the usage (percent) that image garbage collection frees down to;
	// below ImageGCHighThresholdPercent. Default: 80.
	ImageGCLowThresholdPercent *int32 `json:"imageGCLowThresholdPercent,omitempty"`
	// ImageMinimumGCAge is how long an unused image is kept after the kubelet first saw it before
	// image garbage collection may remove it. Default: 2m.
	ImageMinimumGCAge metav1.Duration `json:"imageMinimumGCAge,omitempty"`
	// ContainerLogMaxSize is the size at which a container's log file is rotated, a quantity such as
	// "10Mi". Default: "10Mi".
	ContainerLogMaxSize string `json:"containerLogMaxSize,omitempty"`
	// ContainerLogMaxFiles is how many log files (current included) are kept per container; at
	// least 2. Default: 5.
	ContainerLogMaxFiles *int32 `json:"containerLogMaxFiles,omitempty"`
	// CrashLoopBackOff bounds the delay before restarting a container that keeps exiting.
	CrashLoopBackOff CrashLoopBackOffConfig `json:"crashLoopBackOff,omitempty"`
	// ShutdownGracePeriod is how long the node delays its shutdown so pods can stop gracefully;
	// 0 disables graceful node shutdown. Default: 0s.
	ShutdownGracePeriod metav1.Duration `json:"shutdownGracePeriod,omitempty"`

	// Logging configures the kubelet's logs. The --log-level and --logging-format flags override it.
	Logging LoggingConfiguration `json:"logging,omitempty"`
}

// KubeletAuthentication says how requests to the kubelet's API server are authenticated.
type KubeletAuthentication struct {
	// X509 authenticates client certificates.
	X509 KubeletX509Authentication `json:"x509"`
	// Webhook authenticates bearer tokens through the API server's TokenReview.
	Webhook KubeletWebhookAuthentication `json:"webhook"`
	// Anonymous treats requests that no other method authenticates as user system:anonymous.
	Anonymous KubeletAnonymousAuthentication `json:"anonymous"`
}

// KubeletX509Authentication authenticates clients by certificate.
type KubeletX509Authentication struct {
	// ClientCAFile is a PEM bundle of CAs; a client certificate signed by one of them authenticates
	// as its CommonName with its Organizations as groups. Empty disables certificate authentication.
	ClientCAFile string `json:"clientCAFile,omitempty"`
}

// KubeletWebhookAuthentication authenticates bearer tokens with TokenReview.
type KubeletWebhookAuthentication struct {
	// Enabled turns token authentication through TokenReview on. Default: true.
	Enabled *bool `json:"enabled,omitempty"`
	// CacheTTL is how long TokenReview answers are cached. Default: 2m.
	CacheTTL metav1.Duration `json:"cacheTTL,omitempty"`
}

// KubeletAnonymousAuthentication configures anonymous requests.
type KubeletAnonymousAuthentication struct {
	// Enabled lets unauthenticated requests through as system:anonymous (group
	// system:unauthenticated), still subject to authorization. Default: false (upstream v1beta1
	// defaults to true; kubeadm sets false).
	Enabled *bool `json:"enabled,omitempty"`
}

// Authorization modes of the kubelet's API server.
const (
	// AuthorizationModeWebhook asks the API server with SubjectAccessReview.
	AuthorizationModeWebhook = "Webhook"
	// AuthorizationModeAlwaysAllow allows every authenticated request.
	AuthorizationModeAlwaysAllow = "AlwaysAllow"
)

// KubeletAuthorization says how requests are authorized.
type KubeletAuthorization struct {
	// Mode is "Webhook" (SubjectAccessReview against the API server) or "AlwaysAllow".
	// Default: "Webhook".
	Mode string `json:"mode,omitempty"`
	// Webhook configures SubjectAccessReview caching.
	Webhook KubeletWebhookAuthorization `json:"webhook"`
}

// KubeletWebhookAuthorization configures SubjectAccessReview caching.
type KubeletWebhookAuthorization struct {
	// CacheAuthorizedTTL is how long "allowed" answers are cached. Default: 5m.
	CacheAuthorizedTTL metav1.Duration `json:"cacheAuthorizedTTL,omitempty"`
	// CacheUnauthorizedTTL is how long "denied" answers are cached. Default: 30s.
	CacheUnauthorizedTTL metav1.Duration `json:"cacheUnauthorizedTTL,omitempty"`
}

// Taint is a taint the Node registers with (the shape of core/v1 Taint without timeAdded).
type Taint struct {
	// Key is the taint key, a qualified name such as "example.com/dedicated".
	Key string `json:"key"`
	// Value is the taint value, a label value; may be empty.
	Value string `json:"value,omitempty"`
	// Effect is NoSchedule, PreferNoSchedule or NoExecute.
	Effect string `json:"effect"`
}

// CrashLoopBackOffConfig bounds the restart back-off of crashing containers. The delay starts at
// InitialContainerRestartPeriod, doubles after each exit and stops growing at
// MaxContainerRestartPeriod; a container that runs for 10 minutes resets it.
type CrashLoopBackOffConfig struct {
	// InitialContainerRestartPeriod is the first back-off delay (kubenode addition; upstream fixes
	// it at 10s). Default: 10s.
	InitialContainerRestartPeriod *metav1.Duration `json:"initialContainerRestartPeriod,omitempty"`
	// MaxContainerRestartPeriod is the largest back-off delay, between 1s and 300s. Default: 300s.
	MaxContainerRestartPeriod *metav1.Duration `json:"maxContainerRestartPeriod,omitempty"`
}

// LoggingConfiguration configures a component's logs.
type LoggingConfiguration struct {
	// Format is "text" (human-readable) or "json". Default: "text".
	Format string `json:"format,omitempty"`
	// Verbosity is the klog-style verbosity: 0 logs info and above; higher numbers log more debug
	// detail. Default: 0.
	Verbosity uint32 `json:"verbosity,omitempty"`
}
