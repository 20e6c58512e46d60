package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	proxyv1alpha1 "github.com/kubenode/kubenode/api/kubeproxy/v1alpha1"
	"github.com/kubenode/kubenode/common/httpserver"
	"github.com/kubenode/kubenode/common/version"
	"github.com/kubenode/kubenode/kubeproxy/internal/changes"
	"github.com/kubenode/kubenode/kubeproxy/internal/conntrack"
	"github.com/kubenode/kubenode/kubeproxy/internal/gcpolicy"
	"github.com/kubenode/kubenode/kubeproxy/internal/healthcheck"
	"github.com/kubenode/kubenode/kubeproxy/internal/ipvs"
	"github.com/kubenode/kubenode/kubeproxy/internal/nft"
	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
	"github.com/kubenode/kubenode/kubeproxy/internal/proxier"
)

// nodeLookupTimeout bounds how long start-up waits for this Node's addresses
// (which decide the served IP families) before falling back to bindAddress.
const nodeLookupTimeout = 10 * time.Second

// run wires kube-proxy together and blocks until ctx ends or a part fails.
// On shutdown the dataplane stays in place: connections keep working while
// kube-proxy restarts.
func run(ctx context.Context, _ *Options, cfg *proxyv1alpha1.KubeProxyConfiguration, log *zap.Logger) error {
	nodeName, err := NodeName(cfg)
	if err != nil {
		return err
	}
	npPrimary, npCIDRs, err := plan.ParseNodePortAddresses(cfg.NodePortAddresses)
	if err != nil {
		return err
	}
	clusterCIDRs, err := parseClusterCIDR(cfg.ClusterCIDR)
	if err != nil {
		return err
	}
	client, err := newClient(cfg.ClientConnection)
	if err != nil {
		return err
	}
	families, err := servedFamilies(ctx, client, nodeName, cfg.BindAddress, clusterCIDRs, log)
	if err != nil {
		return err
	}
	dataplanes, err := newDataplanes(cfg, families, log)
	if err != nil {
		return err
	}
	syncPeriod, minSyncPeriod := syncPeriods(cfg)
	applyProcessSettings(cfg, log)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	health := healthcheck.NewProxyHealth(2*syncPeriod, time.Now)
	svcHealth := healthcheck.NewServiceHealth(log.Named("healthcheck"), health)
	defer svcHealth.Close()
	p, err := proxier.New(log.Named("proxier"), proxier.Config{
		NodeName:        nodeName,
		MinSyncPeriod:   minSyncPeriod,
		SyncPeriod:      syncPeriod,
		FallbackNodeIPs: fallbackNodeIPs(cfg.BindAddress),
		Plan: plan.Config{
			NodePortPrimary: npPrimary,
			NodePortCIDRs:   npCIDRs,
			ClusterCIDRs:    clusterCIDRs,
			MasqueradeAll:   cfg.NFTables.MasqueradeAll,
		},
	}, proxier.Deps{
		Dataplanes:    dataplanes,
		Registerer:    reg,
		Health:        health,
		ServiceHealth: svcHealth,
		Conntrack:     conntrack.NewCleaner(log.Named("conntrack"), conntrack.NewNetlink(0)),
		Addrs:         interfaceAddrs{},
	})
	if err != nil {
		return err
	}
	inf, err := proxier.NewInformers(client, nodeName, cfg.ConfigSyncPeriod.Duration, p)
	if err != nil {
		return err
	}

	g, ctx := errgroup.WithContext(ctx)
	if cfg.HealthzBindAddress != "" {
		hz := healthcheck.NewServer(cfg.HealthzBindAddress, log.Named("healthz"), health)
		g.Go(func() error { return hz.Run(ctx) })
	}
	if cfg.MetricsBindAddress != "" {
		ms := httpserver.New(cfg.MetricsBindAddress, log.Named("metrics"),
			httpserver.WithMetrics(reg), httpserver.WithProfiling(cfg.EnableProfiling))
		if _, err := ms.Listen(); err != nil {
			return fmt.Errorf("metricsBindAddress: %w", err)
		}
		g.Go(func() error { return ms.Run(ctx) })
	}
	g.Go(func() error { inf.Run(ctx); return nil })
	g.Go(func() error { return p.Run(ctx) })
	log.Info("running", zap.String("node", nodeName), zap.String("mode", string(cfg.Mode)),
		zap.Any("families", families), zap.Duration("syncPeriod", syncPeriod), zap.Duration("minSyncPeriod", minSyncPeriod))
	return g.Wait()
}

func newClient(cc proxyv1alpha1.ClientConnectionConfiguration) (kubernetes.Interface, error) {
	var rc *rest.Config
	var err error
	if cc.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cc.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("clientConnection.kubeconfig %q: %w", cc.Kubeconfig, err)
		}
	} else {
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no clientConnection.kubeconfig (--kubeconfig) and not running in a cluster: %w", err)
		}
	}
	rc.QPS, rc.Burst = cc.QPS, int(cc.Burst)
	if cc.ContentType != "" {
		rc.ContentType = cc.ContentType
	}
	rc.UserAgent = Component + "/" + version.Get(Component).Version
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("building the API client: %w", err)
	}
	return client, nil
}

// parseClusterCIDR parses clusterCIDR: one CIDR, or one per family, comma-separated.
func parseClusterCIDR(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("clusterCIDR: %q is not a CIDR: %w", part, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func familyOf(a netip.Addr) plan.Family {
	if a.Unmap().Is4() {
		return plan.IPv4
	}
	return plan.IPv6
}

// servedFamilies decides which IP families get a dataplane: those of the
// Node's InternalIPs and of clusterCIDR, else bindAddress's family.
func servedFamilies(ctx context.Context, client kubernetes.Interface, nodeName, bindAddress string, clusterCIDRs []netip.Prefix, log *zap.Logger) ([]plan.Family, error) {
	set := map[plan.Family]bool{}
	lctx, cancel := context.WithTimeout(ctx, nodeLookupTimeout)
	defer cancel()
	node, err := client.CoreV1().Nodes().Get(lctx, nodeName, metav1.GetOptions{})
	if err != nil {
		log.Warn("cannot read this Node's addresses; choosing IP families from bindAddress and clusterCIDR", zap.String("node", nodeName), zap.Error(err))
	} else {
		for _, ip := range changes.NodeInfoOf(node).InternalIPs {
			set[familyOf(ip)] = true
		}
	}
	for _, c := range clusterCIDRs {
		set[familyOf(c.Addr())] = true
	}
	if len(set) == 0 {
		a, err := netip.ParseAddr(bindAddress)
		if err != nil {
			return nil, fmt.Errorf("bindAddress: %q is not an IP address: %w", bindAddress, err)
		}
		set[familyOf(a)] = true
	}
	var out []plan.Family
	for _, f := range []plan.Family{plan.IPv4, plan.IPv6} {
		if set[f] {
			out = append(out, f)
		}
	}
	return out, nil
}

func syncPeriods(cfg *proxyv1alpha1.KubeProxyConfiguration) (syncPeriod, minSyncPeriod time.Duration) {
	if cfg.Mode == proxyv1alpha1.ProxyModeIPVS {
		return cfg.IPVS.SyncPeriod.Duration, cfg.IPVS.MinSyncPeriod.Duration
	}
	return cfg.NFTables.SyncPeriod.Duration, cfg.NFTables.MinSyncPeriod.Duration
}

// newDataplanes makes one backend of the configured mode per family.
func newDataplanes(cfg *proxyv1alpha1.KubeProxyConfiguration, families []plan.Family, log *zap.Logger) (map[plan.Family]proxier.Dataplane, error) {
	out := map[plan.Family]proxier.Dataplane{}
	for _, f := range families {
		var dp proxier.Dataplane
		var err error
		switch cfg.Mode {
		case proxyv1alpha1.ProxyModeNFTables:
			var bit *int
			if cfg.NFTables.MasqueradeBit != nil {
				b := int(*cfg.NFTables.MasqueradeBit)
				bit = &b
			}
			dp, err = nft.New(nft.Config{Family: f, MasqueradeBit: bit}, log) // names its own logger
		case proxyv1alpha1.ProxyModeIPVS:
			var ic ipvs.Config
			if ic, err = ipvsConfig(cfg.IPVS, f); err == nil {
				dp, err = ipvs.New(ic, log)
			}
		default:
			return nil, fmt.Errorf("mode: %q is not available in this build (want %q or %q)", cfg.Mode, proxyv1alpha1.ProxyModeNFTables, proxyv1alpha1.ProxyModeIPVS)
		}
		if err != nil {
			return nil, fmt.Errorf("mode %s, %s: %w", cfg.Mode, f, err)
		}
		out[f] = dp
	}
	return out, nil
}

// ipvsConfig carries every ipvs.* field the backend acts on (syncPeriod and
// minSyncPeriod go to the sync runner). excludeCIDRs of the other family
// do not concern this family's backend.
func ipvsConfig(c proxyv1alpha1.IPVSConfiguration, f plan.Family) (ipvs.Config, error) {
	out := ipvs.Config{
		Family:    f,
		Scheduler: c.Scheduler,
		StrictARP: c.StrictARP,
		Timeouts: ipvs.Timeouts{
			TCP:    c.TCPTimeout.Duration,
			TCPFin: c.TCPFinTimeout.Duration,
			UDP:    c.UDPTimeout.Duration,
		},
	}
	for i, s := range c.ExcludeCIDRs {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return ipvs.Config{}, fmt.Errorf("ipvs.excludeCIDRs[%d]: %q is not a CIDR: %w", i, s, err)
		}
		if familyOf(p.Addr()) == f {
			out.ExcludeCIDRs = append(out.ExcludeCIDRs, p.Masked())
		}
	}
	return out, nil
}

// interfaceAddrs lists the host's addresses for nodePortAddresses CIDRs.
type interfaceAddrs struct{}

func (interfaceAddrs) LocalAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing interface addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip, ok := netip.AddrFromSlice(n.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no interface addresses")
	}
	return out, nil
}

// fallbackNodeIPs is bindAddress when it names one address of this node.
func fallbackNodeIPs(bindAddress string) []netip.Addr {
	a, err := netip.ParseAddr(bindAddress)
	if err != nil || a.IsUnspecified() {
		return nil
	}
	return []netip.Addr{a.Unmap()}
}

// applyProcessSettings sets the conntrack limits and this process's
// oom_score_adj and GC target percentage. Failures are logged, not fatal: in a container or without
// CAP_SYS_RESOURCE they may be impossible and the proxy still works.
func applyProcessSettings(cfg *proxyv1alpha1.KubeProxyConfiguration, log *zap.Logger) {
	ct := cfg.Conntrack
	limits := conntrack.Limits{
		MaxPerCore:       int(deref(ct.MaxPerCore)),
		Min:              int(deref(ct.Min)),
		UDPTimeout:       ct.UDPTimeout.Duration,
		UDPStreamTimeout: ct.UDPStreamTimeout.Duration,
	}
	if ct.TCPEstablishedTimeout != nil {
		limits.TCPEstablishedTimeout = ct.TCPEstablishedTimeout.Duration
	}
	if ct.TCPCloseWaitTimeout != nil {
		limits.TCPCloseWaitTimeout = ct.TCPCloseWaitTimeout.Duration
	}
	if err := conntrack.ApplyLimits(conntrack.ProcSysctl{Root: "/proc/sys"}, limits, runtime.NumCPU()); err != nil {
		log.Warn("conntrack settings not applied", zap.Error(err))
	}
	if cfg.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(int(*cfg.OOMScoreAdj))), 0o644); err != nil {
			log.Warn("oomScoreAdj not applied", zap.Int32("oomScoreAdj", *cfg.OOMScoreAdj), zap.Error(err))
		}
	}
	if cfg.GCPercent != nil {
		if a := gcpolicy.Apply(int(*cfg.GCPercent), os.Getenv); a.Env != "" {
			log.Info("gcPercent not applied: GOGC is set", zap.Int32("gcPercent", *cfg.GCPercent), zap.String("GOGC", a.Env))
		}
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
