package proxyconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	proxyv1alpha1 "github.com/kubenode/kubenode/api/kubeproxy/v1alpha1"
	"github.com/kubenode/kubenode/common/config"
	upstreamv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
)

func TestLoadKubeadmConfig(t *testing.T) {
	c, warnings, err := Load("testdata/kubeadm.yaml")
	if err != nil {
		t.Fatalf("kubeadm's KubeProxyConfiguration must load: %v", err)
	}
	if len(warnings) != 0 {
		t.Fatalf("kubeadm's file sets nothing kubenode ignores, got warnings %q", warnings)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"kubeconfig", c.ClientConnection.Kubeconfig, "/var/lib/kube-proxy/kubeconfig.conf"},
		{"clusterCIDR", c.ClusterCIDR, "10.244.0.0/16"},
		{"empty mode means nftables", c.Mode, proxyv1alpha1.ProxyModeNFTables},
		{"healthz default", c.HealthzBindAddress, "0.0.0.0:10256"},
		{"null conntrack takes default", *c.Conntrack.MaxPerCore, int32(32768)},
		{"nodePortAddresses default", strings.Join(c.NodePortAddresses, ","), "primary"},
		{"sync default", c.NFTables.SyncPeriod.Duration, 30 * time.Second},
		{"converted to kubenode's apiVersion", c.APIVersion, proxyv1alpha1.APIVersion},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestLoadUpstreamIPVS(t *testing.T) {
	c, warnings, err := Load("testdata/upstream-ipvs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != proxyv1alpha1.ProxyModeIPVS || c.IPVS.Scheduler != "lc" || !c.IPVS.StrictARP || *c.Conntrack.MaxPerCore != 0 {
		t.Fatalf("values not carried over: %+v", c)
	}
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "iptables is ignored") {
		t.Fatalf("warnings = %q, want only iptables", warnings)
	}
}

func TestLoadUpstreamUnsupported(t *testing.T) {
	_, warnings, err := Load("testdata/upstream-unsupported.yaml")
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *config.Error", err)
	}
	want := map[string]int{"mode": 3, "detectLocalMode": 4}
	if len(ce.Problems) != len(want) {
		t.Fatalf("problems = %v, want exactly %v", ce.Problems, want)
	}
	for _, p := range ce.Problems {
		if line, ok := want[p.Field]; !ok || line != p.Line || !strings.Contains(p.Message, "not supported") {
			t.Errorf("unexpected problem %+v", p)
		}
	}
	if !strings.Contains(err.Error(), `line 3: mode: mode "iptables" is not supported by kubenode`) {
		t.Errorf("the iptables mode error must name field mode:\n%v", err)
	}
	joined := strings.Join(warnings, "\n")
	for _, w := range []string{"featureGates", "detectLocal"} {
		if !strings.Contains(joined, w+" is ignored") {
			t.Errorf("warnings %q do not name %s", warnings, w)
		}
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	_, _, err := Load("testdata/invalid.yaml")
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{
		"testdata/invalid.yaml: 2 problems:",
		`line 5: ipvs.scheduler: Unsupported value: "random"`,
		"line 6: ipvs.syncPeriodd: unknown field",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%s", want, err)
		}
	}
}

func TestLoadNativeAndOverrides(t *testing.T) {
	c, warnings, err := Load("testdata/native.yaml")
	if err != nil || len(warnings) != 0 {
		t.Fatalf("err = %v, warnings = %v", err, warnings)
	}
	if !c.NFTables.MasqueradeAll || c.NFTables.MinSyncPeriod.Duration != 100*time.Millisecond {
		t.Fatalf("values not loaded: %+v", c.NFTables)
	}
	c, _, err = LoadWithOverrides("testdata/native.yaml", func(c *proxyv1alpha1.KubeProxyConfiguration) error {
		c.Mode = proxyv1alpha1.ProxyModeIPVS
		return nil
	})
	if err != nil || c.Mode != proxyv1alpha1.ProxyModeIPVS || c.ClusterCIDR != "10.244.0.0/16" {
		t.Fatalf("override must win and keep the rest: %v %+v", err, c)
	}
}

func TestLoadDispatch(t *testing.T) {
	tests := []struct{ name, data, want string }{
		{"kubelet kind", "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeletConfiguration\n", "line 1: apiVersion: "},
		{"missing type", "mode: ipvs\n", "apiVersion and kind are required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, _, err := Load(path); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestUpstreamTableIsComplete(t *testing.T) {
	if missing := config.UnclassifiedFields(&upstreamv1alpha1.KubeProxyConfiguration{}, UpstreamFields()); len(missing) != 0 {
		t.Fatalf("upstream fields with no entry in UpstreamFields: %v", missing)
	}
}
