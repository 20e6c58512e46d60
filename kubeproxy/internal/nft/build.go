package nft

import (
	"net/netip"
	"slices"

	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// Priorities of the base chains, as nft names them: dstnat = -100,
// srcnat = 100, filter = 0. Our filter chains run just before "filter" so
// the no-endpoint rejects happen ahead of other users' filter rules.
const (
	prioDstNAT = -100
	prioSrcNAT = 100
	prioFilter = -10
)

// objects are the chains and elements that one service (or the fixed part
// of the ruleset) contributes.
type objects struct {
	chains []chain
	elems  []elem
}

// svcIDs are the numeric ids a service uses in shared maps. They are stable
// while the service and endpoint exist, so an endpoint change rewrites only
// the elements that changed, and never reused, so stale affinity entries of
// a removed endpoint can never match a new one.
type svcIDs struct {
	cluster, external uint32
	eps               map[netip.AddrPort]uint32
}

// idAlloc hands out ids; zero is never used.
type idAlloc struct{ next uint32 }

func (a *idAlloc) get() uint32 {
	a.next++
	return a.next
}

// staticObjects builds the fixed chains of a family and the plan-wide
// elements (node IPs).
func staticObjects(f fam, p *plan.Plan) objects {
	var o objects
	jumpServices := []rule{{act: actJump, chain: f.services()}}
	o.chains = append(o.chains,
		chain{name: f.natPrerouting(), hook: hookPrerouting, nat: true, priority: prioDstNAT, rules: jumpServices},
		chain{name: f.natOutput(), hook: hookOutput, nat: true, priority: prioDstNAT, rules: jumpServices},
		chain{name: f.natPostrouting(), hook: hookPostrouting, nat: true, priority: prioSrcNAT, rules: []rule{
			{markSet: true, act: actMasquerade},
			// Hairpin: a pod reaching itself through a service must see the
			// reply come back through the node, so its source is rewritten.
			{ctDNAT: true, hairpin: true, act: actMasquerade},
		}},
	)

	var svcRules []rule
	if p.MasqueradeAll || len(familyPrefixes(f, p.ClusterCIDRs)) > 0 {
		svcRules = append(svcRules, rule{daddrSet: f.clusterIPs(), act: actJump, chain: f.markExternalSrc()})
	}
	svcRules = append(svcRules, rule{act: actServiceVmap, set: f.serviceIPs()})
	nodePortRule := rule{act: actNodePortVmap, set: f.nodePorts()}
	noEpNodePortRule := rule{ctNew: true, act: actNodePortVmap, set: f.noEndpointPorts()}
	if p.NodePortsOnAllLocalAddresses {
		nodePortRule.daddrLocal, noEpNodePortRule.daddrLocal = true, true
	} else {
		nodePortRule.daddrSet, noEpNodePortRule.daddrSet = f.nodeIPs(), f.nodeIPs()
	}
	svcRules = append(svcRules, nodePortRule)
	o.chains = append(o.chains, chain{name: f.services(), rules: svcRules})

	var markRules []rule
	if !p.MasqueradeAll {
		for _, c := range familyPrefixes(f, p.ClusterCIDRs) {
			markRules = append(markRules, rule{src: c, act: actReturn})
		}
	}
	markRules = append(markRules, rule{mark: true, act: actContinue})
	o.chains = append(o.chains, chain{name: f.markExternalSrc(), rules: markRules})

	o.chains = append(o.chains, chain{name: f.rejectChain(), rules: []rule{{act: actRejectTCP}, {act: actReject}}})

	noEp := rule{ctNew: true, act: actServiceVmap, set: f.noEndpoints()}
	o.chains = append(o.chains,
		chain{name: f.filterInput(), hook: hookInput, priority: prioFilter, rules: []rule{noEp, noEpNodePortRule}},
		chain{name: f.filterForward(), hook: hookForward, priority: prioFilter, rules: []rule{noEp}},
		chain{name: f.filterOutput(), hook: hookOutput, priority: prioFilter, rules: []rule{noEp}},
	)

	for _, ip := range p.NodeIPs {
		if famOfAddr(ip) == f.f {
			o.elems = append(o.elems, elem{set: f.nodeIPs(), key: keyAddr(ip)})
		}
	}
	return o
}

func famOfAddr(a netip.Addr) plan.Family {
	if a.Is4() || a.Is4In6() {
		return plan.IPv4
	}
	return plan.IPv6
}

func familyPrefixes(f fam, ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if famOfAddr(p.Addr()) == f.f {
			out = append(out, p.Masked())
		}
	}
	return out
}

// serviceObjects builds everything one service contributes. prev are the
// ids from the previous build (nil for a new service); the returned ids
// replace them.
func serviceObjects(f fam, p *plan.Plan, s *plan.Service, prev *svcIDs, alloc *idAlloc) (objects, *svcIDs) {
	ids := &svcIDs{eps: map[netip.AddrPort]uint32{}}
	if prev != nil {
		ids.cluster, ids.external = prev.cluster, prev.external
	}
	if ids.cluster == 0 {
		ids.cluster = alloc.get()
	}
	if ids.external == 0 {
		ids.external = alloc.get()
	}
	epID := func(ep plan.Endpoint) uint32 {
		ap := ep.AddrPort()
		if id, ok := ids.eps[ap]; ok {
			return id
		}
		id := uint32(0)
		if prev != nil {
			id = prev.eps[ap]
		}
		if id == 0 {
			id = alloc.get()
		}
		ids.eps[ap] = id
		return id
	}

	var o objects
	n := s.Name
	affinity := s.AffinityTimeout > 0
	epChains := map[string]bool{}

	// selectRules returns the rules that pick one of eps (never empty) and
	// adds the elements they need.
	selectRules := func(group uint32, eps []plan.Endpoint) []rule {
		var rules []rule
		if affinity {
			for _, ep := range eps {
				id := epID(ep)
				name := f.epChain(n, ep.AddrPort())
				rules = append(rules, rule{affinityEp: id, act: actGoto, chain: name})
				if !epChains[name] {
					epChains[name] = true
					o.chains = append(o.chains, chain{name: name, rules: []rule{
						{act: actAffinityDNAT, epID: id, timeout: s.AffinityTimeout, dnat: ep.AddrPort()},
					}})
				}
			}
		}
		for i, ep := range eps {
			e := elem{key: keyGroupIndex(group, uint32(i))}
			if affinity {
				e.set, e.verdict, e.chain = f.selectChains(), verdictGoto, f.epChain(n, ep.AddrPort())
			} else {
				e.set, e.data = f.selectMap(), dataAddrPort(ep.AddrPort())
			}
			o.elems = append(o.elems, e)
			o.elems = append(o.elems, elem{set: f.hairpinSet(), key: keyAddrAddr(ep.IP, ep.IP)})
		}
		act := actSelectDNAT
		if affinity {
			act = actSelectGoto
		}
		return append(rules, rule{act: act, group: group, n: uint32(len(eps))})
	}

	noEndpoints := func(set, key string, t plan.Target) {
		e := elem{set: set, key: key, verdict: verdictDrop}
		if t == plan.TargetReject {
			e.verdict, e.chain = verdictGoto, f.rejectChain()
		}
		o.elems = append(o.elems, e)
	}

	svc := f.svcChain(n)
	clusterTarget := s.ClusterTarget()
	cipKey := keyAddrProtoPort(s.ClusterIP, n.Protocol, s.Port)
	o.elems = append(o.elems, elem{set: f.clusterIPs(), key: keyAddr(s.ClusterIP)})
	if clusterTarget == plan.TargetEndpoints {
		o.chains = append(o.chains, chain{name: svc, rules: selectRules(ids.cluster, s.ClusterEndpoints)})
		o.elems = append(o.elems, elem{set: f.serviceIPs(), key: cipKey, verdict: verdictGoto, chain: svc})
	} else {
		noEndpoints(f.noEndpoints(), cipKey, clusterTarget)
	}

	if !s.HasExternal() {
		return o, ids
	}
	extTarget := s.ExternalTarget()
	if extTarget != plan.TargetEndpoints {
		for _, ip := range append(slices.Clone(s.ExternalIPs), s.LoadBalancerIPs...) {
			noEndpoints(f.noEndpoints(), keyAddrProtoPort(ip, n.Protocol, s.Port), extTarget)
		}
		if s.NodePort != 0 {
			noEndpoints(f.noEndpointPorts(), keyProtoPort(n.Protocol, s.NodePort), extTarget)
		}
		return o, ids
	}

	ext := f.extChain(n)
	var extRules []rule
	if s.ExternalPolicyLocal {
		// Traffic from local pods or the node itself to an external
		// address short-circuits to the cluster endpoints, like upstream.
		if clusterTarget == plan.TargetEndpoints {
			for _, c := range familyPrefixes(f, p.ClusterCIDRs) {
				extRules = append(extRules, rule{src: c, act: actGoto, chain: svc})
			}
			extRules = append(extRules, rule{fibSrcLocal: true, mark: true, act: actGoto, chain: svc})
		}
	} else {
		extRules = append(extRules, rule{mark: true, act: actContinue})
	}
	if clusterTarget == plan.TargetEndpoints && slices.Equal(s.ExternalEndpoints, s.ClusterEndpoints) {
		extRules = append(extRules, rule{act: actGoto, chain: svc})
	} else {
		extRules = append(extRules, selectRules(ids.external, s.ExternalEndpoints)...)
	}
	o.chains = append(o.chains, chain{name: ext, rules: extRules})

	for _, ip := range s.ExternalIPs {
		o.elems = append(o.elems, elem{set: f.serviceIPs(), key: keyAddrProtoPort(ip, n.Protocol, s.Port), verdict: verdictGoto, chain: ext})
	}
	lbTarget := ext
	if ranges := familyPrefixes(f, s.LoadBalancerSourceRanges); len(ranges) > 0 && len(s.LoadBalancerIPs) > 0 {
		lbTarget = f.fwChain(n)
		var fw []rule
		for _, r := range ranges {
			fw = append(fw, rule{src: r, act: actGoto, chain: ext})
		}
		fw = append(fw, rule{act: actDrop})
		o.chains = append(o.chains, chain{name: lbTarget, rules: fw})
	}
	for _, ip := range s.LoadBalancerIPs {
		o.elems = append(o.elems, elem{set: f.serviceIPs(), key: keyAddrProtoPort(ip, n.Protocol, s.Port), verdict: verdictGoto, chain: lbTarget})
	}
	if s.NodePort != 0 {
		o.elems = append(o.elems, elem{set: f.nodePorts(), key: keyProtoPort(n.Protocol, s.NodePort), verdict: verdictGoto, chain: ext})
	}
	return o, ids
}
