package v1alpha1

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

func load(t *testing.T, data []byte) *KubeProxyConfiguration {
	t.Helper()
	var c KubeProxyConfiguration
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		t.Fatalf("strict unmarshal: %v", err)
	}
	return &c
}

func TestRoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c := load(t, data)
			SetDefaults(c)
			if errs := Validate(c); len(errs) != 0 {
				t.Fatalf("testdata must be valid after defaulting: %v", errs.ToAggregate())
			}
			out, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			again := load(t, out)
			if !reflect.DeepEqual(c, again) {
				t.Fatalf("round trip changed the object:\nfirst  %+v\nsecond %+v\nyaml:\n%s", c, again, out)
			}
			SetDefaults(again)
			if !reflect.DeepEqual(c, again) {
				t.Fatalf("SetDefaults is not idempotent")
			}
		})
	}
}

func TestFullFileKeepsEveryValue(t *testing.T) {
	data, err := os.ReadFile("testdata/ipvs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := load(t, data)
	before := *c
	SetDefaults(c)
	if !reflect.DeepEqual(before, *c) {
		t.Fatalf("ipvs.yaml sets every field, so defaulting must change nothing:\nbefore %+v\nafter  %+v", before, *c)
	}
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
