package app

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	proxyv1alpha1 "github.com/kubenode/kubenode/api/kubeproxy/v1alpha1"
	"github.com/kubenode/kubenode/kubeproxy/internal/ipvs"
	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// Every ipvs.* field the file or flags accept reaches the backend's config.
func TestIPVSConfigWiring(t *testing.T) {
	path := writeConfig(t, `apiVersion: kubeproxy.config.kubenode.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
ipvs:
  scheduler: wrr
  strictARP: true
  tcpTimeout: 1h
  tcpFinTimeout: 30s
  excludeCIDRs: ["10.200.0.0/16", "fd00:200::/64"]
`)
	tests := []struct {
		name  string
		args  []string
		fam   plan.Family
		want  ipvs.Config
		wantX []string
	}{
		{"file, IPv4", nil, plan.IPv4, ipvs.Config{Family: plan.IPv4, Scheduler: "wrr", StrictARP: true,
			Timeouts: ipvs.Timeouts{TCP: time.Hour, TCPFin: 30 * time.Second}}, []string{"10.200.0.0/16"}},
		{"file, IPv6 gets its own family's exclusions", nil, plan.IPv6, ipvs.Config{Family: plan.IPv6, Scheduler: "wrr", StrictARP: true,
			Timeouts: ipvs.Timeouts{TCP: time.Hour, TCPFin: 30 * time.Second}}, []string{"fd00:200::/64"}},
		{"flags override the file", []string{"--ipvs-scheduler=sh", "--ipvs-strict-arp=false", "--ipvs-udp-timeout=2m",
			"--ipvs-tcp-timeout=0", "--ipvs-exclude-cidrs=192.168.0.0/24"}, plan.IPv4,
			ipvs.Config{Family: plan.IPv4, Scheduler: "sh", Timeouts: ipvs.Timeouts{TCPFin: 30 * time.Second, UDP: 2 * time.Minute}},
			[]string{"192.168.0.0/24"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, out, err := execute(t, append([]string{"--config", path}, tc.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			got, err := ipvsConfig(cfg.IPVS, tc.fam)
			if err != nil {
				t.Fatal(err)
			}
			var gotX []string
			for _, p := range got.ExcludeCIDRs {
				gotX = append(gotX, p.String())
			}
			got.ExcludeCIDRs = nil
			if got.Family != tc.want.Family || got.Scheduler != tc.want.Scheduler || got.StrictARP != tc.want.StrictARP || got.Timeouts != tc.want.Timeouts {
				t.Errorf("ipvs config %+v, want %+v", got, tc.want)
			}
			if !slices.Equal(gotX, tc.wantX) {
				t.Errorf("excludeCIDRs %q, want %q", gotX, tc.wantX)
			}
		})
	}
}

func TestIPVSConfigErrors(t *testing.T) {
	_, err := ipvsConfig(proxyv1alpha1.IPVSConfiguration{ExcludeCIDRs: []string{"10.0.0.0/8", "nope"}}, plan.IPv4)
	if err == nil || !strings.Contains(err.Error(), "ipvs.excludeCIDRs[1]") {
		t.Fatalf("err = %v, want it to name ipvs.excludeCIDRs[1]", err)
	}
	c, err := ipvsConfig(proxyv1alpha1.IPVSConfiguration{ExcludeCIDRs: []string{"10.1.2.3/8"}}, plan.IPv4)
	if err != nil || len(c.ExcludeCIDRs) != 1 || c.ExcludeCIDRs[0] != netip.MustParsePrefix("10.0.0.0/8") {
		t.Fatalf("got %v, %v; want the masked 10.0.0.0/8", c.ExcludeCIDRs, err)
	}
}

// `kube-proxy cleanup --ipvs-exclude-cidrs` refuses a bad CIDR before it removes anything.
func TestCleanupExcludeCIDRsFlag(t *testing.T) {
	_, out, err := execute(t, "cleanup", "--ipvs-exclude-cidrs=10.0.0.0/8,nope")
	if err == nil || !strings.Contains(err.Error(), "ipvs.excludeCIDRs[1]") {
		t.Fatalf("err = %v, want it to name ipvs.excludeCIDRs[1]\n%s", err, out)
	}
}
