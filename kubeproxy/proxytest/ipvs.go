// Package proxytest runs kube-proxy's core (informers, change tracking, plan and the sync
// runner) with the IPVS backend over its in-memory kernel, for end-to-end tests against a real
// API server on machines whose kernel has no IPVS. The kube-proxy binary does not use it.
package proxytest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/kubernetes"

	"github.com/kubenode/kubenode/kubeproxy/internal/ipvs"
	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
	"github.com/kubenode/kubenode/kubeproxy/internal/proxier"
)

// Options configure NewIPVS.
type Options struct {
	// NodeName is the node whose Node object and endpoints count as local. Required.
	NodeName string
	// NodeIPs stand in for the node's addresses while its Node object has no InternalIP.
	NodeIPs []netip.Addr
	// MinSyncPeriod and SyncPeriod default to kube-proxy's defaults (1s, 30s).
	MinSyncPeriod, SyncPeriod time.Duration
}

// IPVS is kube-proxy's IPVS mode with a fake kernel, reading Services and EndpointSlices
// from a real API server.
type IPVS struct {
	kernel *ipvs.Fake
	fw     *ipvs.FakeFirewall
	p      *proxier.Proxier
	inf    *proxier.Informers
}

// NewIPVS wires the core together; it starts nothing.
func NewIPVS(client kubernetes.Interface, o Options, log *zap.Logger) (*IPVS, error) {
	if client == nil {
		return nil, errors.New("proxytest: nil client")
	}
	if log == nil {
		return nil, errors.New("proxytest: nil logger")
	}
	if o.NodeName == "" {
		return nil, errors.New("proxytest: Options.NodeName is required")
	}
	if o.MinSyncPeriod == 0 {
		o.MinSyncPeriod = time.Second
	}
	if o.SyncPeriod == 0 {
		o.SyncPeriod = 30 * time.Second
	}
	k := ipvs.NewFake()
	k.SetLocalAddresses(o.NodeIPs...)
	fw := ipvs.NewFakeFirewall()
	be, err := ipvs.NewWithKernel(ipvs.Config{Family: plan.IPv4}, log, k, fw)
	if err != nil {
		return nil, err
	}
	p, err := proxier.New(log.Named("proxier"), proxier.Config{
		NodeName:        o.NodeName,
		MinSyncPeriod:   o.MinSyncPeriod,
		SyncPeriod:      o.SyncPeriod,
		FallbackNodeIPs: o.NodeIPs,
	}, proxier.Deps{
		Dataplanes: map[plan.Family]proxier.Dataplane{plan.IPv4: be},
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		return nil, err
	}
	inf, err := proxier.NewInformers(client, o.NodeName, 0, p)
	if err != nil {
		return nil, err
	}
	return &IPVS{kernel: k, fw: fw, p: p, inf: inf}, nil
}

// Run runs the informers and the sync loop until ctx ends.
func (x *IPVS) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { x.inf.Run(ctx); return nil })
	g.Go(func() error { return x.p.Run(ctx) })
	return g.Wait()
}

// Destinations returns the real servers of the TCP virtual server vip that take new
// connections (weight above 0), sorted; an error when there is no such virtual server.
func (x *IPVS) Destinations(vip netip.AddrPort) ([]netip.AddrPort, error) {
	rss, err := x.kernel.RealServers(ipvs.VSKey{Address: vip.Addr(), Protocol: unix.IPPROTO_TCP, Port: vip.Port()})
	if err != nil {
		return nil, fmt.Errorf("virtual server tcp/%s: %w", vip, err)
	}
	var out []netip.AddrPort
	for _, rs := range rss {
		if rs.Weight > 0 {
			out = append(out, rs.Key())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Compare(out[j]) < 0 })
	return out, nil
}

// HasVirtualServer reports whether the TCP virtual server vip exists.
func (x *IPVS) HasVirtualServer(vip netip.AddrPort) bool {
	_, err := x.kernel.VirtualServer(ipvs.VSKey{Address: vip.Addr(), Protocol: unix.IPPROTO_TCP, Port: vip.Port()})
	return err == nil
}

// Verdict walks the first packet of a new TCP connection from src to dst:port through the
// IPVS mode's nftables support rules (source ranges, no-endpoint rejects, masquerading);
// local says the node itself sends it.
func (x *IPVS) Verdict(src, dst netip.Addr, port uint16, local bool) ipvs.Verdict {
	return x.fw.Packet(src, dst, port, local, netip.AddrPort{})
}
