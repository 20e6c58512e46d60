package v1alpha1

import (
	"sort"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestValidate(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	d := func(v time.Duration) metav1.Duration { return metav1.Duration{Duration: v} }
	tests := []struct {
		name   string
		modify func(c *KubeProxyConfiguration)
		want   []string // field paths with errors, sorted
	}{
		{"defaults are valid", func(*KubeProxyConfiguration) {}, nil},
		{"wrong apiVersion", func(c *KubeProxyConfiguration) { c.APIVersion = "kubeproxy.config.k8s.io/v1alpha1" }, []string{"apiVersion"}},
		{"iptables mode", func(c *KubeProxyConfiguration) { c.Mode = "iptables" }, []string{"mode"}},
		{"ipvs mode", func(c *KubeProxyConfiguration) { c.Mode = ProxyModeIPVS }, nil},
		{"negative qps and burst", func(c *KubeProxyConfiguration) { c.ClientConnection.QPS = -1; c.ClientConnection.Burst = -1 }, []string{"clientConnection.burst", "clientConnection.qps"}},
		{"bind address", func(c *KubeProxyConfiguration) { c.BindAddress = "eth0" }, []string{"bindAddress"}},
		{"healthz without port", func(c *KubeProxyConfiguration) { c.HealthzBindAddress = "0.0.0.0" }, []string{"healthzBindAddress"}},
		{"metrics bad host", func(c *KubeProxyConfiguration) { c.MetricsBindAddress = "localhost:10249" }, []string{"metricsBindAddress"}},
		{"ipv6 healthz", func(c *KubeProxyConfiguration) { c.HealthzBindAddress = "[::]:10256" }, nil},
		{"dual-stack cluster CIDR", func(c *KubeProxyConfiguration) { c.ClusterCIDR = "10.244.0.0/16,fd00::/48" }, nil},
		{"two IPv4 cluster CIDRs", func(c *KubeProxyConfiguration) { c.ClusterCIDR = "10.244.0.0/16,10.245.0.0/16" }, []string{"clusterCIDR"}},
		{"cluster CIDR not a CIDR", func(c *KubeProxyConfiguration) { c.ClusterCIDR = "10.244.0.0" }, []string{"clusterCIDR"}},
		{"node port addresses", func(c *KubeProxyConfiguration) { c.NodePortAddresses = []string{"10.0.0.0/8", "eth0"} }, []string{"nodePortAddresses[1]"}},
		{"primary mixed with CIDR", func(c *KubeProxyConfiguration) { c.NodePortAddresses = []string{"primary", "10.0.0.0/8"} }, []string{"nodePortAddresses[0]"}},
		{"config sync period", func(c *KubeProxyConfiguration) { c.ConfigSyncPeriod = d(-time.Minute) }, []string{"configSyncPeriod"}},
		{"ipvs scheduler", func(c *KubeProxyConfiguration) { c.IPVS.Scheduler = "random" }, []string{"ipvs.scheduler"}},
		{"ipvs min above sync", func(c *KubeProxyConfiguration) { c.IPVS.MinSyncPeriod = d(time.Hour) }, []string{"ipvs.minSyncPeriod"}},
		{"ipvs exclude CIDRs and timeouts", func(c *KubeProxyConfiguration) {
			c.IPVS.ExcludeCIDRs = []string{"10.0.0.1"}
			c.IPVS.TCPTimeout = d(-time.Second)
		}, []string{"ipvs.excludeCIDRs[0]", "ipvs.tcpTimeout"}},
		{"ipvs timeouts under a second", func(c *KubeProxyConfiguration) {
			c.IPVS.TCPFinTimeout = d(500 * time.Millisecond)
			c.IPVS.UDPTimeout = d(time.Second)
		}, []string{"ipvs.tcpFinTimeout"}},
		{"nftables sync", func(c *KubeProxyConfiguration) { c.NFTables.SyncPeriod = d(-time.Second) }, []string{"nftables.syncPeriod"}},
		{"masquerade bit", func(c *KubeProxyConfiguration) { c.NFTables.MasqueradeBit = i32(32) }, []string{"nftables.masqueradeBit"}},
		{"conntrack", func(c *KubeProxyConfiguration) {
			c.Conntrack.MaxPerCore = i32(-1)
			c.Conntrack.UDPTimeout = d(-time.Second)
		}, []string{"conntrack.maxPerCore", "conntrack.udpTimeout"}},
		{"oom score", func(c *KubeProxyConfiguration) { c.OOMScoreAdj = i32(-1001) }, []string{"oomScoreAdj"}},
		{"gc percent too low", func(c *KubeProxyConfiguration) { c.GCPercent = i32(5) }, []string{"gcPercent"}},
		{"gc percent too high", func(c *KubeProxyConfiguration) { c.GCPercent = i32(1001) }, []string{"gcPercent"}},
		{"logging", func(c *KubeProxyConfiguration) { c.Logging.Format = "logfmt" }, []string{"logging.format"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &KubeProxyConfiguration{}
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
