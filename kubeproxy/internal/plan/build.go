package plan

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// Config is the part of the proxy configuration the planner applies.
type Config struct {
	// NodePortPrimary: serve node ports on the node's primary addresses.
	// NodePortCIDRs: serve them on local addresses within these CIDRs. Both
	// unset means primary. A /0 CIDR means every local address.
	NodePortPrimary bool
	NodePortCIDRs   []netip.Prefix
	// ClusterCIDRs are the pod networks (any family).
	ClusterCIDRs  []netip.Prefix
	MasqueradeAll bool
}

// ParseNodePortAddresses parses the nodePortAddresses setting: "primary" and
// CIDRs. The error names the field and the bad value.
func ParseNodePortAddresses(values []string) (primary bool, cidrs []netip.Prefix, err error) {
	for i, v := range values {
		v = strings.TrimSpace(v)
		if v == "primary" {
			primary = true
			continue
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return false, nil, fmt.Errorf("nodePortAddresses[%d]: %q is neither \"primary\" nor a CIDR: %w", i, v, err)
		}
		cidrs = append(cidrs, p.Masked())
	}
	return primary, cidrs, nil
}

// NodeFacts is what the planner knows about this node.
type NodeFacts struct {
	// PrimaryIPs are the node's primary addresses (its InternalIPs).
	PrimaryIPs []netip.Addr
	// LocalAddrs are the addresses on this host's interfaces.
	LocalAddrs []netip.Addr
}

// Build computes the plan of one family. When prev is a plan of the same
// family built from the same node facts and config, and changed names every
// service port that changed since prev, only those are recomputed; pass
// prev=nil (or changed=nil) to compute everything. Unchanged services keep
// prev's pointers, so a backend compares them in O(1).
func Build(family Family, services ServiceMap, endpoints EndpointsMap, node NodeFacts, cfg Config, prev *Plan, changed map[ServicePortName]struct{}) *Plan {
	p := &Plan{
		Family:        family,
		NodeIPs:       nodePortIPs(family, node, cfg),
		ClusterCIDRs:  inFamilyPrefixes(family, cfg.ClusterCIDRs),
		MasqueradeAll: cfg.MasqueradeAll,
	}
	for _, c := range cfg.NodePortCIDRs {
		if c.Bits() == 0 && familyOf(c.Addr()) == family {
			p.NodePortsOnAllLocalAddresses = true
		}
	}
	incremental := prev != nil && changed != nil && prev.Family == family
	if incremental {
		p.Services = maps.Clone(prev.Services)
		for name := range changed {
			delete(p.Services, name)
			if sp, ok := services[name]; ok {
				addService(p, prev, sp, endpoints[name])
			}
		}
		return p
	}
	p.Services = make(map[ServicePortName]*Service, len(services))
	for name, sp := range services {
		addService(p, prev, sp, endpoints[name])
	}
	return p
}

func addService(p, prev *Plan, sp *ServicePort, eps []Endpoint) {
	s := service(p.Family, sp, eps)
	if s == nil {
		return
	}
	if prev != nil && prev.Family == p.Family {
		if old := prev.Services[s.Name]; old.Equal(s) {
			s = old
		}
	}
	p.Services[s.Name] = s
}

// service builds one family's Service, or nil when the service port has no
// cluster IP in that family.
func service(family Family, sp *ServicePort, all []Endpoint) *Service {
	var clusterIP netip.Addr
	for _, ip := range sp.ClusterIPs {
		if familyOf(ip) == family {
			clusterIP = ip
			break
		}
	}
	if !clusterIP.IsValid() {
		return nil
	}
	s := &Service{
		Name:                sp.Name,
		ClusterIP:           clusterIP,
		Port:                sp.Port,
		NodePort:            sp.NodePort,
		ExternalIPs:         inFamily(family, sp.ExternalIPs),
		LoadBalancerIPs:     inFamily(family, sp.LoadBalancerIPs),
		AffinityTimeout:     sp.AffinityTimeout,
		InternalPolicyLocal: sp.InternalPolicyLocal,
		ExternalPolicyLocal: sp.ExternalPolicyLocal,
		HealthCheckNodePort: sp.HealthCheckNodePort,
	}
	if len(s.LoadBalancerIPs) > 0 {
		s.LoadBalancerSourceRanges = inFamilyPrefixes(family, sp.LoadBalancerSourceRanges)
	}
	eps := inFamilyEndpoints(family, all)
	clusterWide := preferSameTopology(usable(eps, false))
	// Only the Local policies need the local subset.
	var local []Endpoint
	if s.InternalPolicyLocal || s.ExternalPolicyLocal {
		local = usable(eps, true)
	}
	if s.InternalPolicyLocal {
		s.ClusterEndpoints = local
	} else {
		s.ClusterEndpoints = clusterWide
	}
	if s.HasExternal() {
		if s.ExternalPolicyLocal {
			s.ExternalEndpoints = local
		} else {
			s.ExternalEndpoints = clusterWide
		}
	}
	// Like upstream: cluster-wide endpoints count as reachable unless only
	// local ones are ever used (ITP=Local and no external access).
	if s.InternalPolicyLocal && !s.HasExternal() {
		s.HasEndpoints = len(local) > 0
	} else {
		s.HasEndpoints = len(clusterWide) > 0
	}
	return s
}

// inFamilyEndpoints returns the endpoints of one family. When all of them
// are (the usual case), it returns all itself, clipped: the endpoints map's
// slices are never modified, and sharing them keeps one copy of every
// endpoint list in memory instead of one per plan.
func inFamilyEndpoints(family Family, all []Endpoint) []Endpoint {
	n := 0
	for _, e := range all {
		if familyOf(e.IP) == family {
			n++
		}
	}
	if n == len(all) {
		return slices.Clip(all)
	}
	eps := make([]Endpoint, 0, n)
	for _, e := range all {
		if familyOf(e.IP) == family {
			eps = append(eps, e)
		}
	}
	return eps
}

// usable picks the endpoints traffic goes to: the ready ones, or, when none
// is ready, the serving terminating ones (so connections drain gracefully
// during a rollout rather than failing). localOnly keeps only this node's.
// When every endpoint qualifies, eps itself is returned (shared, see
// inFamilyEndpoints); otherwise a new slice.
func usable(eps []Endpoint, localOnly bool) []Endpoint {
	ready := func(e Endpoint) bool { return e.Ready && (!localOnly || e.Local) }
	terminating := func(e Endpoint) bool {
		return !e.Ready && e.Serving && e.Terminating && (!localOnly || e.Local)
	}
	pick := ready
	n := countFunc(eps, ready)
	if n == 0 {
		pick, n = terminating, countFunc(eps, terminating)
	}
	switch n {
	case 0:
		return nil
	case len(eps):
		return eps
	}
	out := make([]Endpoint, 0, n)
	for _, e := range eps {
		if pick(e) {
			out = append(out, e)
		}
	}
	return out
}

func countFunc(eps []Endpoint, f func(Endpoint) bool) int {
	n := 0
	for _, e := range eps {
		if f(e) {
			n++
		}
	}
	return n
}

func nodePortIPs(family Family, node NodeFacts, cfg Config) []netip.Addr {
	var out []netip.Addr
	if cfg.NodePortPrimary || len(cfg.NodePortCIDRs) == 0 {
		// The first InternalIP of a family is the primary one.
		for _, ip := range node.PrimaryIPs {
			if familyOf(ip) == family {
				out = append(out, ip)
				break
			}
		}
	}
	for _, ip := range node.LocalAddrs {
		if familyOf(ip) != family {
			continue
		}
		for _, c := range cfg.NodePortCIDRs {
			if c.Contains(ip) {
				out = append(out, ip)
				break
			}
		}
	}
	return sortedAddrs(out)
}

func familyOf(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

func inFamily(family Family, addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if familyOf(a) == family {
			out = append(out, a)
		}
	}
	return sortedAddrs(out)
}

func inFamilyPrefixes(family Family, ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if familyOf(p.Addr()) == family {
			out = append(out, p)
		}
	}
	return out
}

func sortedAddrs(a []netip.Addr) []netip.Addr {
	slices.SortFunc(a, func(x, y netip.Addr) int { return x.Compare(y) })
	return slices.Compact(a)
}
