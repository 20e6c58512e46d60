package v1alpha1

import (
	"sort"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestValidate(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	i64 := func(v int64) *int64 { return &v }
	no := false
	d := func(v time.Duration) metav1.Duration { return metav1.Duration{Duration: v} }
	dp := func(v time.Duration) *metav1.Duration { return &metav1.Duration{Duration: v} }
	tests := []struct {
		name   string
		modify func(c *KubeletConfiguration)
		want   []string // field paths with errors, sorted
	}{
		{"defaults are valid", func(*KubeletConfiguration) {}, nil},
		{"wrong kind", func(c *KubeletConfiguration) { c.Kind = "KubeProxyConfiguration" }, []string{"kind"}},
		{"runtime endpoint not a unix URL", func(c *KubeletConfiguration) { c.ContainerRuntimeEndpoint = "tcp://1.2.3.4:5" }, []string{"containerRuntimeEndpoint"}},
		{"relative static pod path", func(c *KubeletConfiguration) { c.StaticPodPath = "manifests" }, []string{"staticPodPath"}},
		{"zero sync frequency", func(c *KubeletConfiguration) { c.SyncFrequency = d(-time.Second) }, []string{"syncFrequency"}},
		{"bad address and port", func(c *KubeletConfiguration) { c.Address = "localhost"; c.Port = 70000 }, []string{"address", "port"}},
		{"healthz port 0 disables", func(c *KubeletConfiguration) { c.HealthzPort = i32(0) }, nil},
		{"healthz port negative", func(c *KubeletConfiguration) { c.HealthzPort = i32(-1) }, []string{"healthzPort"}},
		{"cert without key", func(c *KubeletConfiguration) { c.TLSCertFile = "/a.crt" }, []string{"tlsPrivateKeyFile"}},
		{"negative cache TTL", func(c *KubeletConfiguration) { c.Authentication.Webhook.CacheTTL = d(-time.Second) }, []string{"authentication.webhook.cacheTTL"}},
		{"unknown authorization mode", func(c *KubeletConfiguration) { c.Authorization.Mode = "RBAC" }, []string{"authorization.mode"}},
		{"no authentication at all", func(c *KubeletConfiguration) { c.Authentication.Webhook.Enabled = &no }, []string{"authentication"}},
		{"cluster DNS not an IP", func(c *KubeletConfiguration) { c.ClusterDNS = []string{"10.96.0.10", "dns.local"} }, []string{"clusterDNS[1]"}},
		{"cluster domain invalid", func(c *KubeletConfiguration) { c.ClusterDomain = "Cluster_Local" }, []string{"clusterDomain"}},
		{"maxPods zero", func(c *KubeletConfiguration) { c.MaxPods = -1 }, []string{"maxPods"}},
		{"pids limit zero", func(c *KubeletConfiguration) { c.PodPidsLimit = i64(0) }, []string{"podPidsLimit"}},
		{"cgroup driver", func(c *KubeletConfiguration) { c.CgroupDriver = "systemD" }, []string{"cgroupDriver"}},
		{"cgroup root relative", func(c *KubeletConfiguration) { c.CgroupRoot = "kubepods" }, []string{"cgroupRoot"}},
		{"reserved unknown resource and bad quantity", func(c *KubeletConfiguration) {
			c.SystemReserved = map[string]string{"gpu": "1", "memory": "lots"}
		}, []string{"systemReserved[gpu]", "systemReserved[memory]"}},
		{"eviction thresholds", func(c *KubeletConfiguration) {
			c.EvictionHard = map[string]string{"memory.available": "150%", "nodefs.available": "5%", "disk.free": "1Gi", "imagefs.available": "x"}
		}, []string{"evictionHard[disk.free]", "evictionHard[imagefs.available]", "evictionHard[memory.available]"}},
		{"soft thresholds with their grace periods", func(c *KubeletConfiguration) {
			c.EvictionSoft = map[string]string{"memory.available": "500Mi", "nodefs.available": "15%"}
			c.EvictionSoftGracePeriod = map[string]string{"memory.available": "1m30s", "nodefs.available": "2m"}
			c.EvictionMaxPodGracePeriod = 30
		}, nil},
		{"soft thresholds: bad value, missing grace, grace without threshold, bad durations", func(c *KubeletConfiguration) {
			c.EvictionSoft = map[string]string{"memory.available": "lots", "nodefs.available": "15%", "pid.available": "100"}
			c.EvictionSoftGracePeriod = map[string]string{"memory.available": "1m", "pid.available": "soon", "imagefs.available": "1m", "disk.free": "1m"}
		}, []string{"evictionSoftGracePeriod[disk.free]", "evictionSoftGracePeriod[imagefs.available]", "evictionSoftGracePeriod[nodefs.available]", "evictionSoftGracePeriod[pid.available]", "evictionSoft[memory.available]"}},
		{"negative max pod grace period", func(c *KubeletConfiguration) { c.EvictionMaxPodGracePeriod = -1 }, []string{"evictionMaxPodGracePeriod"}},
		{"lease duration", func(c *KubeletConfiguration) { c.NodeLeaseDurationSeconds = -5 }, []string{"nodeLeaseDurationSeconds"}},
		{"taints", func(c *KubeletConfiguration) {
			c.RegisterWithTaints = []Taint{{Key: "ok", Effect: "NoSchedule"}, {Key: "bad key", Effect: "Never"}}
		}, []string{"registerWithTaints[1].effect", "registerWithTaints[1].key"}},
		{"labels", func(c *KubeletConfiguration) { c.NodeLabels = map[string]string{"a/b/c": "x", "ok": "bad value!"} }, []string{"nodeLabels[a/b/c]", "nodeLabels[ok]"}},
		{"well-known labels a node may set", func(c *KubeletConfiguration) {
			c.NodeLabels = map[string]string{"topology.kubernetes.io/zone": "a", "node.kubernetes.io/instance-type": "m5", "kubelet.kubernetes.io/x": "y", "example.com/k8s.io": "z"}
		}, nil},
		{"reserved labels", func(c *KubeletConfiguration) {
			c.NodeLabels = map[string]string{"node-role.kubernetes.io/worker": "", "kubernetes.io/role": "x", "foo.k8s.io/a": "b", "node-restriction.kubernetes.io/x": "y"}
		}, []string{"nodeLabels[foo.k8s.io/a]", "nodeLabels[kubernetes.io/role]", "nodeLabels[node-restriction.kubernetes.io/x]", "nodeLabels[node-role.kubernetes.io/worker]"}},
		{"image GC thresholds out of order", func(c *KubeletConfiguration) {
			c.ImageGCHighThresholdPercent = i32(50)
			c.ImageGCLowThresholdPercent = i32(60)
		}, []string{"imageGCLowThresholdPercent"}},
		{"negative image GC age and pressure transition", func(c *KubeletConfiguration) {
			c.ImageMinimumGCAge = d(-time.Second)
			c.EvictionPressureTransitionPeriod = d(-time.Minute)
		}, []string{"evictionPressureTransitionPeriod", "imageMinimumGCAge"}},
		{"image GC threshold over 100", func(c *KubeletConfiguration) { c.ImageGCHighThresholdPercent = i32(101) }, []string{"imageGCHighThresholdPercent"}},
		{"parallel pulls while serialized", func(c *KubeletConfiguration) { c.MaxParallelImagePulls = i32(4) }, []string{"maxParallelImagePulls"}},
		{"one parallel pull while serialized", func(c *KubeletConfiguration) { c.MaxParallelImagePulls = i32(1) }, nil},
		{"parallel pulls when not serialized", func(c *KubeletConfiguration) {
			c.SerializeImagePulls = &no
			c.MaxParallelImagePulls = i32(4)
		}, nil},
		{"no parallel pulls", func(c *KubeletConfiguration) {
			c.SerializeImagePulls = &no
			c.MaxParallelImagePulls = i32(0)
		}, []string{"maxParallelImagePulls"}},
		{"negative pod start cap", func(c *KubeletConfiguration) { c.MaxParallelPodStarts = i32(-1) }, []string{"maxParallelPodStarts"}},
		{"no pod start cap", func(c *KubeletConfiguration) { c.MaxParallelPodStarts = i32(0) }, nil},
		{"log size", func(c *KubeletConfiguration) { c.ContainerLogMaxSize = "ten megs" }, []string{"containerLogMaxSize"}},
		{"log files", func(c *KubeletConfiguration) { c.ContainerLogMaxFiles = i32(1) }, []string{"containerLogMaxFiles"}},
		{"backoff initial above max", func(c *KubeletConfiguration) {
			c.CrashLoopBackOff.InitialContainerRestartPeriod = dp(time.Minute)
			c.CrashLoopBackOff.MaxContainerRestartPeriod = dp(30 * time.Second)
		}, []string{"crashLoopBackOff.initialContainerRestartPeriod"}},
		{"backoff max too large", func(c *KubeletConfiguration) { c.CrashLoopBackOff.MaxContainerRestartPeriod = dp(time.Hour) }, []string{"crashLoopBackOff.maxContainerRestartPeriod"}},
		{"logging", func(c *KubeletConfiguration) { c.Logging.Format = "xml"; c.Logging.Verbosity = 11 }, []string{"logging.format", "logging.verbosity"}},
		{"every problem is reported", func(c *KubeletConfiguration) {
			c.Port = 0
			c.CgroupDriver = "x"
			c.MaxPods = -1
		}, []string{"cgroupDriver", "maxPods", "port"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &KubeletConfiguration{}
			SetDefaults(c)
			tc.modify(c)
			var got []string
			for _, e := range Validate(c) {
				got = append(got, e.Field)
			}
			sort.Strings(got)
			if len(got) != len(tc.want) {
				t.Fatalf("errors on %v, want %v: %v", got, tc.want, Validate(c).ToAggregate())
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("errors on %v, want %v", got, tc.want)
				}
			}
		})
	}
}
