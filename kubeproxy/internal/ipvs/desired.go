package ipvs

import (
	"net/netip"
	"slices"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
	"golang.org/x/sys/unix"
)

// desiredVS is one virtual server and the real servers it should carry.
type desiredVS struct {
	vs  VirtualServer
	rss []netip.AddrPort
}

// serviceState is what one plan.Service programs: virtual servers, the
// addresses it needs on the device, and its share of the support rules.
type serviceState struct {
	svc   *plan.Service
	vss   []desiredVS
	addrs []netip.Addr
	elems []Element
}

func protoNum(p plan.Protocol) uint16 {
	switch p {
	case plan.UDP:
		return unix.IPPROTO_UDP
	case plan.SCTP:
		return unix.IPPROTO_SCTP
	}
	return unix.IPPROTO_TCP
}

// desiredService maps one planned service onto IPVS: a virtual server on the
// cluster IP, one per external and load-balancer IP, and one per node
// address for the node port. Pure: nodeIPs are resolved by the caller.
func desiredService(s *plan.Service, scheduler string, nodeIPs []netip.Addr) *serviceState {
	proto := protoNum(s.Name.Protocol)
	st := &serviceState{svc: s}
	mk := func(addr netip.Addr, port uint16) VirtualServer {
		vs := VirtualServer{VSKey: VSKey{Address: addr, Protocol: proto, Port: port}, Scheduler: scheduler}
		if s.AffinityTimeout > 0 {
			vs.Persistent = true
			vs.Timeout = uint32(s.AffinityTimeout.Seconds())
			if vs.Timeout == 0 {
				vs.Timeout = 1
			}
		}
		return vs
	}
	eps := func(list []plan.Endpoint) []netip.AddrPort {
		out := make([]netip.AddrPort, len(list))
		for i, e := range list {
			out[i] = e.AddrPort()
		}
		return out
	}
	clusterEPs := eps(s.ClusterEndpoints)
	externalEPs := eps(s.ExternalEndpoints)
	l4 := uint8(proto)

	// Cluster IP.
	st.vss = append(st.vss, desiredVS{vs: mk(s.ClusterIP, s.Port), rss: clusterEPs})
	st.addrs = append(st.addrs, s.ClusterIP)
	st.elems = append(st.elems,
		Element{Set: SetServiceVIPs, Addr: s.ClusterIP, Proto: l4, Port: s.Port},
		Element{Set: SetClusterVIPs, Addr: s.ClusterIP, Proto: l4, Port: s.Port})
	st.elems = appendNoEndpoints(st.elems, s.ClusterTarget(), s.ClusterIP, l4, s.Port)

	// External traffic: external IPs, load-balancer IPs, node ports.
	external := func(addr netip.Addr, port uint16) {
		st.vss = append(st.vss, desiredVS{vs: mk(addr, port), rss: externalEPs})
		st.elems = append(st.elems, Element{Set: SetServiceVIPs, Addr: addr, Proto: l4, Port: port})
		if !s.ExternalPolicyLocal {
			// externalTrafficPolicy=Local keeps the client's source;
			// Cluster masquerades so replies come back through this node.
			st.elems = append(st.elems, Element{Set: SetExternalMasq, Addr: addr, Proto: l4, Port: port})
		}
		st.elems = appendNoEndpoints(st.elems, s.ExternalTarget(), addr, l4, port)
	}
	for _, ip := range s.ExternalIPs {
		external(ip, s.Port)
		st.addrs = append(st.addrs, ip)
	}
	for _, ip := range s.LoadBalancerIPs {
		external(ip, s.Port)
		st.addrs = append(st.addrs, ip)
		st.elems = appendSourceRanges(st.elems, s.LoadBalancerSourceRanges, ip, l4, s.Port, nodeIPs)
	}
	if s.NodePort != 0 {
		for _, ip := range nodeIPs {
			external(ip, s.NodePort)
		}
		st.elems = append(st.elems, Element{Set: SetNodePorts, Proto: l4, Port: s.NodePort})
	}
	if s.HealthCheckNodePort != 0 {
		st.elems = append(st.elems, Element{Set: SetNodePorts, Proto: unix.IPPROTO_TCP, Port: s.HealthCheckNodePort})
	}

	// Hairpin: an endpoint reaching its own service must be masqueraded or
	// it would answer itself directly, from the wrong address.
	seen := map[netip.AddrPort]bool{}
	for _, list := range [][]netip.AddrPort{clusterEPs, externalEPs} {
		for _, ep := range list {
			if !seen[ep] {
				seen[ep] = true
				st.elems = append(st.elems, Element{Set: SetHairpin, Addr: ep.Addr(), Proto: l4, Port: ep.Port(), Addr2: ep.Addr()})
			}
		}
	}
	return st
}

// appendSourceRanges restricts a load-balancer IP to loadBalancerSourceRanges.
// Like upstream, when a range holds a node IP, the node may also reach the
// LB IP from the LB IP itself (the source the kernel picks for a local
// address, which the LB IP is, on the device).
func appendSourceRanges(elems []Element, ranges []netip.Prefix, ip netip.Addr, proto uint8, port uint16, nodeIPs []netip.Addr) []Element {
	if len(ranges) == 0 {
		return elems
	}
	allow := slices.Clone(ranges)
	fromNode := slices.ContainsFunc(nodeIPs, func(n netip.Addr) bool {
		return slices.ContainsFunc(ranges, func(r netip.Prefix) bool { return r.Contains(n) })
	})
	if fromNode {
		allow = append(allow, netip.PrefixFrom(ip, ip.BitLen()))
	}
	elems = append(elems, Element{Set: SetLBFirewall, Addr: ip, Proto: proto, Port: port})
	for _, r := range disjoint(allow) {
		elems = append(elems, sourceRange(ip, proto, port, r))
	}
	return elems
}

// mergeSourceRanges makes the SetLBSourceRanges elements (only those) of
// each destination disjoint across services: two Services claiming one LB
// IP and port (a conflict the API allows) must not make the kernel refuse
// the whole table. A later partial update may then miss an element and
// fail, which falls back to a full sync, where this runs again.
func mergeSourceRanges(elems []Element) []Element {
	type dest struct {
		addr  netip.Addr
		proto uint8
		port  uint16
	}
	byDest := map[dest][]netip.Prefix{}
	for _, e := range elems {
		d := dest{e.Addr, e.Proto, e.Port}
		byDest[d] = append(byDest[d], e.Src())
	}
	out := make([]Element, 0, len(elems))
	for d, ps := range byDest {
		for _, p := range disjoint(ps) {
			out = append(out, sourceRange(d.addr, d.proto, d.port, p))
		}
	}
	return out
}

// disjoint masks the prefixes and drops those inside another one: the
// kernel's range set refuses overlapping elements, and two prefixes either
// nest or do not overlap.
func disjoint(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Masked())
	}
	// Shorter (wider) prefixes first, so each one's container is already kept.
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if a.Bits() != b.Bits() {
			return a.Bits() - b.Bits()
		}
		return a.Addr().Compare(b.Addr())
	})
	kept := out[:0]
	for _, p := range out {
		if !slices.ContainsFunc(kept, func(k netip.Prefix) bool { return k.Contains(p.Addr()) }) {
			kept = append(kept, p)
		}
	}
	return kept
}

func appendNoEndpoints(elems []Element, t plan.Target, addr netip.Addr, proto uint8, port uint16) []Element {
	switch t {
	case plan.TargetReject:
		return append(elems, Element{Set: SetReject, Addr: addr, Proto: proto, Port: port})
	case plan.TargetDrop:
		return append(elems, Element{Set: SetDrop, Addr: addr, Proto: proto, Port: port})
	}
	return elems
}
