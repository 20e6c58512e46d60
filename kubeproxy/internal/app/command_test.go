package app

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	proxyv1alpha1 "github.com/kubenode/kubenode/api/kubeproxy/v1alpha1"
	"github.com/kubenode/kubenode/common/commandtest"
)

// execute runs the command in-process with a runner that records what run would get.
func execute(t *testing.T, args ...string) (*proxyv1alpha1.KubeProxyConfiguration, string, error) {
	t.Helper()
	var got *proxyv1alpha1.KubeProxyConfiguration
	cmd := newCommand(func(_ context.Context, _ *Options, cfg *proxyv1alpha1.KubeProxyConfiguration, _ *zap.Logger) error {
		got = cfg
		return nil
	})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return got, out.String(), err
}

func writeConfig(t *testing.T, data string) string {
	t.Helper()
	return commandtest.WriteFile(t, "kube-proxy.yaml", data)
}

const badConfig = `apiVersion: kubeproxy.config.kubenode.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
ipvs:
  schedular: rr
nftables:
  masqueradeBit: 40
`

func TestBadConfigListsEveryProblem(t *testing.T) {
	path := writeConfig(t, badConfig)
	cfg, _, err := execute(t, "--config", path)
	if err == nil || cfg != nil {
		t.Fatalf("a bad config must fail before run: err=%v", err)
	}
	commandtest.ContainsAll(t, "error", err.Error(),
		path+": 2 problems:",
		"line 5: ipvs.schedular: unknown field",
		"line 7: nftables.masqueradeBit: Invalid value: 40: must be between 0 and 31",
	)
}

func TestFlagsOverrideConfigFile(t *testing.T) {
	path := writeConfig(t, `apiVersion: kubeproxy.config.kubenode.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
clusterCIDR: 10.244.0.0/16
ipvs:
  scheduler: wrr
  syncPeriod: 1m
`)
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, c *proxyv1alpha1.KubeProxyConfiguration)
	}{
		{"file values without flags", nil, func(t *testing.T, c *proxyv1alpha1.KubeProxyConfiguration) {
			if c.Mode != proxyv1alpha1.ProxyModeIPVS || c.IPVS.Scheduler != "wrr" || c.HealthzBindAddress != "0.0.0.0:10256" {
				t.Fatalf("got %+v", c)
			}
		}},
		{"explicit flags win", []string{"--ipvs-scheduler=lc", "--ipvs-min-sync-period=5s", "--masquerade-all", "--nodeport-addresses=10.0.0.0/8,fd00::/8", "--kubeconfig=/k.conf", "--hostname-override=n1", "--conntrack-max-per-core=0"}, func(t *testing.T, c *proxyv1alpha1.KubeProxyConfiguration) {
			if c.IPVS.Scheduler != "lc" || c.IPVS.MinSyncPeriod.Duration != 5*time.Second || !c.NFTables.MasqueradeAll ||
				strings.Join(c.NodePortAddresses, ",") != "10.0.0.0/8,fd00::/8" || c.ClientConnection.Kubeconfig != "/k.conf" || c.HostnameOverride != "n1" || *c.Conntrack.MaxPerCore != 0 {
				t.Fatalf("flags did not override: %+v", c)
			}
			if c.IPVS.SyncPeriod.Duration != time.Minute || c.ClusterCIDR != "10.244.0.0/16" || c.Mode != proxyv1alpha1.ProxyModeIPVS {
				t.Fatalf("unset flags must keep file values: %+v", c)
			}
		}},
		{"proxy mode flag", []string{"--proxy-mode=nftables", "--nftables-min-sync-period=200ms"}, func(t *testing.T, c *proxyv1alpha1.KubeProxyConfiguration) {
			if c.Mode != proxyv1alpha1.ProxyModeNFTables || c.NFTables.MinSyncPeriod.Duration != 200*time.Millisecond {
				t.Fatalf("got %+v", c)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := execute(t, append([]string{"--config", path}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"iptables mode", []string{"--proxy-mode=iptables"}, `kube-proxy configuration from flags: mode: Unsupported value: "iptables"`},
		{"scheduler", []string{"--ipvs-scheduler=fifo"}, "ipvs.scheduler"},
		{"cluster cidr", []string{"--cluster-cidr=10.0.0.0"}, "clusterCIDR"},
		{"logging format", []string{"--logging-format=xml"}, "--logging-format"},
		{"unknown flag", []string{"--iptables-sync-period=1s"}, "unknown flag"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := execute(t, tc.args...)
			if err == nil || cfg != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestUpstreamConfig(t *testing.T) {
	c, _, err := execute(t, "--config", "../proxyconfig/testdata/kubeadm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientConnection.Kubeconfig != "/var/lib/kube-proxy/kubeconfig.conf" || c.Mode != proxyv1alpha1.ProxyModeNFTables {
		t.Fatalf("kubeadm config not applied: %+v", c)
	}
	_, _, err = execute(t, "--config", "../proxyconfig/testdata/upstream-unsupported.yaml")
	if err == nil || !strings.Contains(err.Error(), "line 3: mode:") || !strings.Contains(err.Error(), "detectLocalMode") {
		t.Fatalf("set-but-unsupported fields must be named: %v", err)
	}
}

func TestVersionAndHelp(t *testing.T) {
	cfg, out, err := execute(t, "--version")
	if err != nil || cfg != nil || !strings.HasPrefix(out, "kube-proxy v") || !strings.Contains(out, "commit ") {
		t.Fatalf("--version printed %q (err %v)", out, err)
	}
	_, out, err = execute(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	commandtest.ContainsAll(t, "--help", out, "Config flags:", "Proxy flags:", "nftables flags:", "IPVS flags:", "Conntrack flags:", "Serving flags:", "Logging flags:", "General flags:", "--ipvs-strict-arp", "--proxy-mode")
}

// TestBinary builds the real binary with the Makefile's version stamping and checks what a user sees.
func TestBinary(t *testing.T) {
	bin := commandtest.Build(t, "github.com/kubenode/kubenode/kubeproxy/cmd/kube-proxy")
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kube-proxy "+commandtest.Version+" (commit "+commandtest.Commit) {
		t.Fatalf("--version: %v: %s", err, out)
	}
	commandtest.ExpectExit(t, bin, []string{"--config", writeConfig(t, badConfig)}, 1, "ipvs.schedular: unknown field", "nftables.masqueradeBit: Invalid value")
}
