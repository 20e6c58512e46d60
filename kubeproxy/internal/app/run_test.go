package app

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	proxyv1alpha1 "github.com/kubenode/kubenode/api/kubeproxy/v1alpha1"
	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
	"github.com/kubenode/kubenode/kubeproxy/internal/proxier"
)

func TestParseClusterCIDR(t *testing.T) {
	tests := []struct {
		in   string
		want int
		err  string
	}{
		{in: "", want: 0},
		{in: "10.244.0.0/16", want: 1},
		{in: "10.244.0.0/16, fd00:10::/64", want: 2},
		{in: "10.244.0.0", err: `clusterCIDR: "10.244.0.0"`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseClusterCIDR(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(got) != tc.want {
				t.Errorf("got %v, %v", got, err)
			}
		})
	}
}

func TestServedFamilies(t *testing.T) {
	node := func(addrs ...string) *v1.Node {
		n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "me"}}
		for _, a := range addrs {
			n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: a})
		}
		return n
	}
	tests := []struct {
		name  string
		node  *v1.Node
		bind  string
		cidrs string
		want  []plan.Family
		err   bool
	}{
		{name: "node dual stack", node: node("192.168.1.5", "fd00::5"), bind: "0.0.0.0", want: []plan.Family{plan.IPv4, plan.IPv6}},
		{name: "node IPv6 only", node: node("fd00::5"), bind: "0.0.0.0", want: []plan.Family{plan.IPv6}},
		{name: "no node: bind address", bind: "::", want: []plan.Family{plan.IPv6}},
		{name: "no node: cluster CIDRs", bind: "0.0.0.0", cidrs: "fd00:10::/64", want: []plan.Family{plan.IPv6}},
		{name: "no node, bad bind address", bind: "nope", err: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			if tc.node != nil {
				client = fake.NewClientset(tc.node)
			}
			cidrs, err := parseClusterCIDR(tc.cidrs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := servedFamilies(context.Background(), client, "me", tc.bind, cidrs, zap.NewNop())
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("families = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewDataplanesRejectsUnknownMode(t *testing.T) {
	cfg := &proxyv1alpha1.KubeProxyConfiguration{Mode: "iptables"}
	_, err := newDataplanes(cfg, []plan.Family{plan.IPv4}, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), `mode: "iptables" is not available`) {
		t.Errorf("err = %v", err)
	}
}

type fakeCleanupDP struct {
	calls *[]string
	name  string
	err   error
}

func (f fakeCleanupDP) Sync(context.Context, *plan.Plan, map[plan.ServicePortName]struct{}, bool) error {
	return nil
}
func (f fakeCleanupDP) Cleanup(context.Context) error {
	*f.calls = append(*f.calls, f.name)
	return f.err
}

func TestCleanupCallsEveryBackend(t *testing.T) {
	var calls []string
	factories := func(failIPVS6 bool, skipIPVS bool) func() []cleanerFactory {
		return func() []cleanerFactory {
			return []cleanerFactory{
				{mode: "nftables", make: func(f plan.Family, _ *zap.Logger) (proxier.Dataplane, error) {
					return fakeCleanupDP{calls: &calls, name: "nftables/" + string(f)}, nil
				}},
				{mode: "ipvs", make: func(f plan.Family, _ *zap.Logger) (proxier.Dataplane, error) {
					if skipIPVS {
						return nil, errSkip
					}
					var err error
					if failIPVS6 && f == plan.IPv6 {
						err = errors.New("boom")
					}
					return fakeCleanupDP{calls: &calls, name: "ipvs/" + string(f), err: err}, nil
				}},
			}
		}
	}
	if err := cleanup(context.Background(), zap.NewNop(), factories(false, false)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"nftables/IPv4", "nftables/IPv6", "ipvs/IPv4", "ipvs/IPv6"}; !slices.Equal(calls, want) {
		t.Errorf("cleaned %v, want %v", calls, want)
	}
	calls = nil
	if err := cleanup(context.Background(), zap.NewNop(), factories(false, true)); err != nil {
		t.Errorf("a kernel without IPVS must not fail cleanup: %v", err)
	}
	calls = nil
	err := cleanup(context.Background(), zap.NewNop(), factories(true, false))
	if err == nil || !strings.Contains(err.Error(), "cleaning up ipvs (IPv6): boom") || len(calls) != 4 {
		t.Errorf("err = %v after %v; want the IPv6 IPVS failure reported after trying everything", err, calls)
	}
}
