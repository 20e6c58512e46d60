// Package ipvs is kube-proxy's IPVS backend: it maps the planned services
// onto IPVS virtual servers (one per cluster IP, external IP, load-balancer
// IP and node address:node port), keeps service addresses on a dummy
// device, and programs a small nftables table for what IPVS cannot express
// (masquerading, hairpin, rejecting services without endpoints, dropping
// load-balancer traffic from outside loadBalancerSourceRanges). It also
// sets IPVS's connection timeouts and spares virtual servers in
// excludeCIDRs when it removes stale ones. Each sync diffs the desired state
// against the kernel and applies only the difference.
package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Schedulers are the IPVS schedulers Config.Scheduler accepts.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh"}

// Config configures the backend. Zero fields get the defaults noted.
type Config struct {
	// Family is the IP family this backend serves (default IPv4); a
	// dual-stack node runs one backend per family.
	Family plan.Family
	// Scheduler is the IPVS scheduler of every virtual server (default rr).
	Scheduler string
	// StrictARP sets arp_ignore=1 and arp_announce=2 so the node does not
	// answer ARP for service addresses on the dummy device (needed by
	// MetalLB-style load balancers).
	StrictARP bool
	// GracefulTerminationTimeout bounds how long a removed TCP real server
	// keeps serving its open connections at weight 0 (default 2m).
	GracefulTerminationTimeout time.Duration
	// Timeouts are IPVS's connection timeouts (ipvs.tcpTimeout,
	// tcpFinTimeout, udpTimeout), set at every full sync where the kernel
	// differs; zero fields leave the kernel's value alone. They are global to
	// the network namespace, so both families' backends set the same ones.
	Timeouts Timeouts
	// ExcludeCIDRs (ipvs.excludeCIDRs): virtual servers on these addresses
	// are never deleted as stale, by a full sync or by Cleanup, even on an
	// address of ours (a node IP or the device); another tool manages them.
	ExcludeCIDRs []netip.Prefix
	// Device holds service addresses (default kube-ipvs0).
	Device string
	// Table is the nftables table of the support rules (default kubenode-ipvs).
	Table string
	// NetNSPath, when set, programs that network namespace instead of the
	// current one (tests).
	NetNSPath string
}

func (c *Config) complete() error {
	switch c.Family {
	case "":
		c.Family = plan.IPv4
	case plan.IPv4, plan.IPv6:
	default:
		return fmt.Errorf("ipvs config: family %q: want IPv4 or IPv6", c.Family)
	}
	if c.Scheduler == "" {
		c.Scheduler = "rr"
	}
	if !slices.Contains(Schedulers, c.Scheduler) {
		return fmt.Errorf("ipvs config: scheduler %q: unknown, want one of %v", c.Scheduler, Schedulers)
	}
	if c.GracefulTerminationTimeout < 0 {
		return fmt.Errorf("ipvs config: gracefulTerminationTimeout %s: must not be negative", c.GracefulTerminationTimeout)
	}
	if c.GracefulTerminationTimeout == 0 {
		c.GracefulTerminationTimeout = 2 * time.Minute
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"tcpTimeout", c.Timeouts.TCP}, {"tcpFinTimeout", c.Timeouts.TCPFin}, {"udpTimeout", c.Timeouts.UDP}} {
		// The kernel keeps whole seconds, and 0 means "keep": a sub-second
		// value would silently do nothing.
		if t.d < 0 || (t.d > 0 && t.d < time.Second) {
			return fmt.Errorf("ipvs config: %s %s: must be 0 (keep the kernel's) or at least 1s", t.name, t.d)
		}
	}
	for i, p := range c.ExcludeCIDRs {
		if !p.IsValid() {
			return fmt.Errorf("ipvs config: excludeCIDRs[%d]: invalid prefix", i)
		}
	}
	if c.Device == "" {
		c.Device = "kube-ipvs0"
	}
	if c.Table == "" {
		c.Table = "kubenode-ipvs"
	}
	return nil
}

type rsRef struct {
	vs VSKey
	rs netip.AddrPort
}

// Backend programs one family's plan into IPVS. It implements the proxier's
// Dataplane interface; Sync is called from one goroutine at a time.
type Backend struct {
	cfg    Config
	log    *zap.Logger
	kernel Kernel
	fw     Firewall
	close  func()
	now    func() time.Time

	synced      bool // a full sync succeeded since start or the last error
	nodeIPs     []netip.Addr
	cidrs       []netip.Prefix
	masqAll     bool
	services    map[plan.ServicePortName]*serviceState
	addrCount   map[netip.Addr]int
	elemCount   map[elemKey]int
	owned       map[VSKey]bool
	terminating map[rsRef]time.Time
}

// New checks that the kernel has IPVS (failing with ErrNoIPVS otherwise)
// and opens netlink handles; it changes nothing in the kernel.
func New(cfg Config, log *zap.Logger) (*Backend, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	ns := netns.None()
	if cfg.NetNSPath != "" {
		var err error
		if ns, err = netns.GetFromPath(cfg.NetNSPath); err != nil {
			return nil, fmt.Errorf("ipvs config: netNSPath %q: %w", cfg.NetNSPath, err)
		}
	}
	k, err := NewNetlink(ns)
	if err != nil {
		ns.Close()
		return nil, err
	}
	fw, err := NewNftables(cfg.Table, cfg.Family == plan.IPv6, ns)
	if err != nil {
		k.Close()
		ns.Close()
		return nil, err
	}
	b, err := NewWithKernel(cfg, log, k, fw)
	if err != nil {
		return nil, err
	}
	b.close = func() {
		fw.Close()
		k.Close()
		ns.Close()
	}
	return b, nil
}

// NewWithKernel builds a backend on given kernel and firewall (fakes in tests).
func NewWithKernel(cfg Config, log *zap.Logger, k Kernel, fw Firewall) (*Backend, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	if log == nil {
		return nil, errors.New("ipvs: nil logger")
	}
	return &Backend{
		cfg: cfg, log: log.Named("ipvs"), kernel: k, fw: fw, close: func() {}, now: time.Now,
		services:    map[plan.ServicePortName]*serviceState{},
		addrCount:   map[netip.Addr]int{},
		elemCount:   map[elemKey]int{},
		owned:       map[VSKey]bool{},
		terminating: map[rsRef]time.Time{},
	}, nil
}

// Close releases netlink handles; it leaves the kernel state in place.
func (b *Backend) Close() { b.close() }

// excluded reports whether a virtual server address is in ExcludeCIDRs.
func (b *Backend) excluded(a netip.Addr) bool {
	for _, p := range b.cfg.ExcludeCIDRs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (b *Backend) inFamily(a netip.Addr) bool {
	return a.IsValid() && a.Is4() == (b.cfg.Family == plan.IPv4) && !a.IsLinkLocalUnicast()
}

// Sync makes the kernel match p (see proxier.Dataplane).
func (b *Backend) Sync(ctx context.Context, p *plan.Plan, changed map[plan.ServicePortName]struct{}, full bool) error {
	if p.Family != "" && p.Family != b.cfg.Family {
		return fmt.Errorf("ipvs: plan family %s, backend family %s", p.Family, b.cfg.Family)
	}
	nodeIPs, err := b.resolveNodeIPs(p)
	if err != nil {
		b.synced = false
		return err
	}
	if !b.synced || !slices.Equal(nodeIPs, b.nodeIPs) || !slices.Equal(p.ClusterCIDRs, b.cidrs) || p.MasqueradeAll != b.masqAll {
		full = true
	}
	if full {
		err = b.fullSync(ctx, p, nodeIPs)
	} else {
		err = b.partialSync(ctx, p, changed)
	}
	b.synced = err == nil
	return err
}

func (b *Backend) resolveNodeIPs(p *plan.Plan) ([]netip.Addr, error) {
	var ips []netip.Addr
	src := p.NodeIPs
	if p.NodePortsOnAllLocalAddresses {
		all, err := b.kernel.LocalAddresses(b.cfg.Device)
		if err != nil {
			return nil, fmt.Errorf("ipvs: node addresses for node ports: %w", err)
		}
		src = all
	}
	for _, a := range src {
		if b.inFamily(a) && !slices.Contains(ips, a) {
			ips = append(ips, a)
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return ips, nil
}

func (b *Backend) sysctls() map[string]string {
	s := map[string]string{
		// IPVS connections get conntrack entries, so nftables can
		// masquerade them.
		"net/ipv4/vs/conntrack": "1",
		// Drop connections to deleted real servers at their next packet
		// instead of blackholing them.
		"net/ipv4/vs/expire_nodest_conn": "1",
		// Expire persistence templates of weight-0 real servers, so session
		// affinity does not pin clients to a terminating endpoint.
		"net/ipv4/vs/expire_quiescent_template": "1",
	}
	if b.cfg.Family == plan.IPv4 {
		s["net/ipv4/ip_forward"] = "1"
	} else {
		s["net/ipv6/conf/all/forwarding"] = "1"
	}
	if b.cfg.StrictARP {
		s["net/ipv4/conf/all/arp_ignore"] = "1"
		s["net/ipv4/conf/all/arp_announce"] = "2"
	}
	return s
}

func (b *Backend) ensureSysctls() error {
	for path, want := range b.sysctls() {
		cur, err := b.kernel.Sysctl(path)
		if err == nil && cur == want {
			continue
		}
		if err := b.kernel.SetSysctl(path, want); err != nil {
			return err
		}
		b.log.Info("set sysctl", zap.String("path", path), zap.String("value", want))
	}
	return nil
}

// ensureTimeouts sets the configured IPVS timeouts where the kernel's
// differ (something else may have changed them since the last full sync).
func (b *Backend) ensureTimeouts() error {
	want := b.cfg.Timeouts
	if want == (Timeouts{}) {
		return nil
	}
	cur, err := b.kernel.Timeouts()
	if err != nil {
		return err
	}
	differs := func(w, c time.Duration) bool { w = w.Truncate(time.Second); return w > 0 && w != c }
	if !differs(want.TCP, cur.TCP) && !differs(want.TCPFin, cur.TCPFin) && !differs(want.UDP, cur.UDP) {
		return nil
	}
	if err := b.kernel.SetTimeouts(want); err != nil {
		return err
	}
	b.log.Info("set IPVS timeouts", zap.Stringer("want", want), zap.Stringer("was", cur))
	return nil
}

func (b *Backend) fullSync(ctx context.Context, p *plan.Plan, nodeIPs []netip.Addr) error {
	start := b.now()
	if err := b.ensureSysctls(); err != nil {
		return err
	}
	if err := b.ensureTimeouts(); err != nil {
		return err
	}
	if err := b.kernel.EnsureDevice(b.cfg.Device); err != nil {
		return err
	}
	nodeIPsChanged := !slices.Equal(nodeIPs, b.nodeIPs)
	n := len(p.Services)
	states := make(map[plan.ServicePortName]*serviceState, n)
	desired := make(map[VSKey]*desiredVS, n+n/2)
	addrCount := make(map[netip.Addr]int, n)
	elemCount := make(map[elemKey]int, len(b.elemCount)+n)
	for name, s := range p.Services {
		st := b.services[name]
		if st == nil || nodeIPsChanged || !st.svc.Equal(s) {
			st = desiredService(s, b.cfg.Scheduler, nodeIPs)
		}
		states[name] = st
		for i := range st.vss {
			desired[st.vss[i].vs.VSKey] = &st.vss[i]
		}
		for _, a := range st.addrs {
			addrCount[a]++
		}
		for _, e := range st.elems {
			elemCount[e.key()]++
		}
	}

	var errs []error
	devList, err := b.kernel.DeviceAddresses(b.cfg.Device)
	if err != nil {
		return err
	}
	devAddrs := make(map[netip.Addr]bool, len(devList))
	for _, a := range devList {
		devAddrs[a] = true
	}
	// Virtual servers are ours when their address is a service address on
	// our device, a node address we serve node ports on, or one we made.
	ours := map[netip.Addr]bool{}
	for a := range devAddrs {
		ours[a] = true
	}
	for _, a := range nodeIPs {
		ours[a] = true
	}
	for _, a := range b.nodeIPs {
		ours[a] = true
	}
	cur, err := b.kernel.VirtualServers()
	if err != nil {
		return err
	}
	existing := make(map[VSKey]*VirtualServer, len(cur))
	for _, vs := range cur {
		if !b.inFamily(vs.Address) {
			continue
		}
		existing[vs.VSKey] = vs
		if _, want := desired[vs.VSKey]; want {
			continue
		}
		// Excluded addresses' virtual servers belong to someone else, unless
		// this process made them.
		if b.owned[vs.VSKey] || (ours[vs.Address] && !b.excluded(vs.Address)) {
			if err := b.deleteVS(vs.VSKey); err != nil {
				errs = append(errs, err)
			}
		}
	}
	tIPVS := b.now()
	for _, d := range desired {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.ensureVS(d, existing[d.vs.VSKey]); err != nil {
			errs = append(errs, err)
		}
	}

	tAddrs := b.now()
	// Addresses after virtual servers: new ones start answering only once
	// IPVS would balance them.
	for a := range addrCount {
		if !devAddrs[a] {
			if err := b.kernel.AddDeviceAddress(b.cfg.Device, a); err != nil && !errors.Is(err, ErrExist) {
				errs = append(errs, err)
			}
		}
	}
	for a := range devAddrs {
		if b.inFamily(a) && addrCount[a] == 0 {
			if err := b.kernel.DeleteDeviceAddress(b.cfg.Device, a); err != nil && !errors.Is(err, ErrNotFound) {
				errs = append(errs, err)
			}
		}
	}

	tNft := b.now()
	rs := &Ruleset{IPv6: b.cfg.Family == plan.IPv6, ClusterCIDRs: p.ClusterCIDRs, MasqueradeAll: p.MasqueradeAll}
	rs.Elements = make([]Element, 0, len(elemCount))
	var ranges []Element
	for e := range elemCount {
		if e.set == SetLBSourceRanges {
			ranges = append(ranges, e.elem())
			continue
		}
		rs.Elements = append(rs.Elements, e.elem())
	}
	rs.Elements = append(rs.Elements, mergeSourceRanges(ranges)...)
	if err := b.fw.Replace(rs); err != nil {
		errs = append(errs, err)
	}
	tEnd := b.now()

	b.services, b.addrCount, b.elemCount = states, addrCount, elemCount
	b.owned = make(map[VSKey]bool, len(desired))
	for k := range desired {
		b.owned[k] = true
	}
	b.nodeIPs, b.cidrs, b.masqAll = nodeIPs, slices.Clone(p.ClusterCIDRs), p.MasqueradeAll
	errs = append(errs, b.expireTerminating(desired))
	b.log.Debug("full sync", zap.Int("services", len(states)), zap.Int("virtualServers", len(desired)),
		zap.Duration("took", b.now().Sub(start)), zap.Duration("plan", tIPVS.Sub(start)),
		zap.Duration("ipvs", tAddrs.Sub(tIPVS)), zap.Duration("addresses", tNft.Sub(tAddrs)),
		zap.Duration("nftables", tEnd.Sub(tNft)))
	return errors.Join(errs...)
}

func (b *Backend) partialSync(ctx context.Context, p *plan.Plan, changed map[plan.ServicePortName]struct{}) error {
	var errs []error
	var addElems, delElems []Element
	handled := map[VSKey]*desiredVS{}
	for name := range changed {
		if err := ctx.Err(); err != nil {
			return err
		}
		old := b.services[name]
		s := p.Services[name]
		if old != nil && s != nil && old.svc.Equal(s) {
			old.svc = s
			continue
		}
		var st *serviceState
		if s != nil {
			st = desiredService(s, b.cfg.Scheduler, b.nodeIPs)
			for i := range st.vss {
				d := &st.vss[i]
				handled[d.vs.VSKey] = d
				cur, err := b.kernel.VirtualServer(d.vs.VSKey)
				if err != nil && !errors.Is(err, ErrNotFound) {
					errs = append(errs, err)
					continue
				}
				if err := b.ensureVS(d, cur); err != nil {
					errs = append(errs, err)
				}
				b.owned[d.vs.VSKey] = true
			}
		}
		if old != nil {
			for _, d := range old.vss {
				if _, keep := handled[d.vs.VSKey]; keep {
					continue
				}
				if err := b.deleteVS(d.vs.VSKey); err != nil && !errors.Is(err, ErrNotFound) {
					errs = append(errs, err)
				}
				delete(b.owned, d.vs.VSKey)
			}
		}
		errs = append(errs, b.moveAddrs(old, st))
		a, d := b.moveElems(old, st)
		addElems, delElems = append(addElems, a...), append(delElems, d...)
		if st == nil {
			delete(b.services, name)
		} else {
			b.services[name] = st
		}
	}
	if len(addElems)+len(delElems) > 0 {
		if err := b.fw.Update(addElems, delElems); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, b.expireTerminating(handled))
	return errors.Join(errs...)
}

// moveAddrs swaps a service's device addresses from old to new, adding
// and removing only addresses no other service still needs.
func (b *Backend) moveAddrs(old, st *serviceState) error {
	var errs []error
	if st != nil {
		for _, a := range st.addrs {
			b.addrCount[a]++
			if b.addrCount[a] == 1 {
				if err := b.kernel.AddDeviceAddress(b.cfg.Device, a); err != nil && !errors.Is(err, ErrExist) {
					errs = append(errs, err)
				}
			}
		}
	}
	if old != nil {
		for _, a := range old.addrs {
			b.addrCount[a]--
			if b.addrCount[a] <= 0 {
				delete(b.addrCount, a)
				if err := b.kernel.DeleteDeviceAddress(b.cfg.Device, a); err != nil && !errors.Is(err, ErrNotFound) {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// moveElems returns the set elements to add and delete when a service's
// share changes from old to new; shared elements are reference-counted.
func (b *Backend) moveElems(old, st *serviceState) (add, del []Element) {
	delta := map[elemKey]int{}
	if st != nil {
		for _, e := range st.elems {
			delta[e.key()]++
		}
	}
	if old != nil {
		for _, e := range old.elems {
			delta[e.key()]--
		}
	}
	for e, d := range delta {
		if d == 0 {
			continue
		}
		before := b.elemCount[e]
		after := before + d
		if after <= 0 {
			delete(b.elemCount, e)
		} else {
			b.elemCount[e] = after
		}
		switch {
		case before == 0 && after > 0:
			add = append(add, e.elem())
		case before > 0 && after <= 0:
			del = append(del, e.elem())
		}
	}
	return add, del
}

func (b *Backend) deleteVS(k VSKey) error {
	for ref := range b.terminating {
		if ref.vs == k {
			delete(b.terminating, ref)
		}
	}
	b.log.Debug("delete virtual server", zap.Stringer("vs", k))
	return b.kernel.DeleteVirtualServer(k)
}

// ensureVS makes one virtual server and its real servers match d; cur is
// what the kernel has (nil when missing).
func (b *Backend) ensureVS(d *desiredVS, cur *VirtualServer) error {
	key := d.vs.VSKey
	fresh := false
	switch {
	case cur == nil:
		err := b.kernel.AddVirtualServer(&d.vs)
		switch {
		case err == nil:
			fresh = true
		case errors.Is(err, ErrExist): // appeared since we looked: repair it
			if err := b.kernel.UpdateVirtualServer(&d.vs); err != nil {
				return err
			}
		default:
			return err
		}
	case !cur.Equal(&d.vs):
		if err := b.kernel.UpdateVirtualServer(&d.vs); err != nil {
			return err
		}
	}
	var have []*RealServer
	if !fresh {
		var err error
		if have, err = b.kernel.RealServers(key); err != nil {
			return err
		}
	}
	var errs []error
	// Endpoint lists are short: match by scanning, without a map per
	// virtual server (this loop runs for every virtual server on a resync).
	found := make([]bool, len(d.rss))
	for _, rs := range have {
		k := rs.Key()
		if i := slices.Index(d.rss, k); i >= 0 && !found[i] {
			found[i] = true
			delete(b.terminating, rsRef{key, k})
			if rs.Weight != 1 {
				if err := b.kernel.UpdateRealServer(key, &RealServer{Address: k.Addr(), Port: k.Port(), Weight: 1}); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		if err := b.retire(key, rs); err != nil {
			errs = append(errs, err)
		}
	}
	for i, ep := range d.rss {
		if found[i] || slices.Index(d.rss, ep) != i { // skip duplicates
			continue
		}
		if err := b.kernel.AddRealServer(key, &RealServer{Address: ep.Addr(), Port: ep.Port(), Weight: 1}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// retire handles a real server that is no longer wanted: TCP ones drain at
// weight 0 until their connections end or the timeout passes; UDP and SCTP
// ones go at once (expire_nodest_conn ends their flows), like upstream.
func (b *Backend) retire(key VSKey, rs *RealServer) error {
	ref := rsRef{key, rs.Key()}
	since, tracked := b.terminating[ref]
	conns := rs.ActiveConns + rs.InactiveConns
	graceful := key.Protocol == unix.IPPROTO_TCP
	if graceful && conns > 0 && (!tracked || b.now().Sub(since) < b.cfg.GracefulTerminationTimeout) {
		if !tracked {
			b.terminating[ref] = b.now()
		}
		if rs.Weight != 0 {
			b.log.Debug("drain real server", zap.Stringer("vs", key), zap.Stringer("rs", ref.rs), zap.Int("connections", conns))
			return b.kernel.UpdateRealServer(key, &RealServer{Address: ref.rs.Addr(), Port: ref.rs.Port(), Weight: 0})
		}
		return nil
	}
	delete(b.terminating, ref)
	err := b.kernel.DeleteRealServer(key, ref.rs)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// expireTerminating re-checks draining real servers of virtual servers
// this sync did not already look at.
func (b *Backend) expireTerminating(seen map[VSKey]*desiredVS) error {
	byVS := map[VSKey]bool{}
	for ref := range b.terminating {
		if _, ok := seen[ref.vs]; !ok {
			byVS[ref.vs] = true
		}
	}
	var errs []error
	for key := range byVS {
		rss, err := b.kernel.RealServers(key)
		if errors.Is(err, ErrNotFound) {
			for ref := range b.terminating {
				if ref.vs == key {
					delete(b.terminating, ref)
				}
			}
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		present := map[netip.AddrPort]*RealServer{}
		for _, rs := range rss {
			present[rs.Key()] = rs
		}
		for ref := range b.terminating {
			if ref.vs != key {
				continue
			}
			rs, ok := present[ref.rs]
			if !ok {
				delete(b.terminating, ref)
				continue
			}
			if err := b.retire(key, rs); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Cleanup removes every virtual server of this family on the device's
// addresses, on node addresses and any this backend made, the device and
// the nftables table.
func (b *Backend) Cleanup(ctx context.Context) error {
	var errs []error
	ours := map[netip.Addr]bool{}
	if as, err := b.kernel.DeviceAddresses(b.cfg.Device); err == nil {
		for _, a := range as {
			ours[a] = true
		}
	} else if !errors.Is(err, ErrNotFound) {
		errs = append(errs, err)
	}
	if as, err := b.kernel.LocalAddresses(b.cfg.Device); err == nil {
		for _, a := range as {
			ours[a] = true
		}
	} else {
		errs = append(errs, err)
	}
	vss, err := b.kernel.VirtualServers()
	if err != nil {
		errs = append(errs, err)
	}
	for _, vs := range vss {
		if b.inFamily(vs.Address) && (b.owned[vs.VSKey] || (ours[vs.Address] && !b.excluded(vs.Address))) {
			if err := b.kernel.DeleteVirtualServer(vs.VSKey); err != nil && !errors.Is(err, ErrNotFound) {
				errs = append(errs, err)
			}
		}
	}
	if err := b.kernel.DeleteDevice(b.cfg.Device); err != nil {
		errs = append(errs, err)
	}
	if err := b.fw.Cleanup(); err != nil {
		errs = append(errs, err)
	}
	b.synced = false
	b.services = map[plan.ServicePortName]*serviceState{}
	b.addrCount, b.elemCount = map[netip.Addr]int{}, map[elemKey]int{}
	b.owned, b.terminating = map[VSKey]bool{}, map[rsRef]time.Time{}
	b.nodeIPs, b.cidrs = nil, nil
	return errors.Join(errs...)
}
