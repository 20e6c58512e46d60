package v1alpha1

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubenode/kubenode/api/internal/configtest"
)

func TestRoundTrip(t *testing.T) {
	configtest.RoundTrip(t, SetDefaults, Validate)
}

func TestFullFileKeepsEveryValue(t *testing.T) {
	configtest.KeepsEveryValue(t, "testdata/ipvs.yaml", SetDefaults)
}

func TestDefaults(t *testing.T) {
	c := &KubeProxyConfiguration{}
	SetDefaults(c)
	checks := []struct {
		name      string
		got, want any
	}{
		{"apiVersion", c.APIVersion, APIVersion},
		{"mode", c.Mode, ProxyModeNFTables},
		{"healthz", c.HealthzBindAddress, "0.0.0.0:10256"},
		{"metrics", c.MetricsBindAddress, "127.0.0.1:10249"},
		{"nodePortAddresses", c.NodePortAddresses, []string{"primary"}},
		{"scheduler", c.IPVS.Scheduler, "rr"},
		{"nft sync", c.NFTables.SyncPeriod.Duration, 30 * time.Second},
		{"nft min sync", c.NFTables.MinSyncPeriod.Duration, time.Second},
		{"masquerade bit", *c.NFTables.MasqueradeBit, int32(14)},
		{"conntrack per core", *c.Conntrack.MaxPerCore, int32(32768)},
		{"conntrack established", c.Conntrack.TCPEstablishedTimeout.Duration, 24 * time.Hour},
		{"oomScoreAdj", *c.OOMScoreAdj, int32(-999)},
		{"gcPercent", *c.GCPercent, int32(50)},
		{"qps", c.ClientConnection.QPS, float32(5)},
		{"configSyncPeriod", c.ConfigSyncPeriod, metav1.Duration{Duration: 15 * time.Minute}},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	if errs := Validate(c); len(errs) != 0 {
		t.Fatalf("defaults must validate: %v", errs.ToAggregate())
	}
}
