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

// svcIDs are the endpoint ids a service uses as keys of the shared
// affinity set. They are stable while the endpoint exists and never reused,
// so a client's affinity entry for a removed endpoint can never match a new
// one.
type svcIDs struct {
	eps map[netip.AddrPort]uint32
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
	postrouting := []rule{{markSet: true, act: actMasquerade}}
	for i := range shards {
		// Hairpin: a pod reaching itself through a service must see the
		// reply come back through the node, so its source is rewritten.
		postrouting = append(postrouting, rule{ctDNAT: true, hairpin: true, set: f.hairpinSet(i), act: actMasquerade})
	}
	o.chains = append(o.chains,
		chain{name: f.natPrerouting(), hook: hookPrerouting, nat: true, priority: prioDstNAT, rules: jumpServices},
		chain{name: f.natOutput(), hook: hookOutput, nat: true, priority: prioDstNAT, rules: jumpServices},
		chain{name: f.natPostrouting(), hook: hookPostrouting, nat: true, priority: prioSrcNAT, rules: postrouting},
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
		// Incoming traffic is refused in prerouting: an ICMP error for a
		// bridged packet rejected in the forward hook never leaves on this
		// kernel, one from prerouting does.
		chain{name: f.filterPrerouting(), hook: hookPrerouting, priority: prioDstNAT - 10, rules: []rule{noEp, noEpNodePortRule}},
		chain{name: f.filterOutput(), hook: hookOutput, priority: prioFilter, rules: []rule{noEp, noEpNodePortRule}},
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
// replace them (nil when the service needs none).
func serviceObjects(f fam, p *plan.Plan, s *plan.Service, prev *svcIDs, alloc *idAlloc) (objects, *svcIDs) {
	var ids *svcIDs
	epID := func(ep plan.Endpoint) uint32 {
		ap := ep.AddrPort()
		if ids != nil {
			if id, ok := ids.eps[ap]; ok {
				return id
			}
		}
		id := uint32(0)
		if prev != nil {
			id = prev.eps[ap]
		}
		if id == 0 {
			id = alloc.get()
		}
		if ids == nil {
			// Only affinity services have endpoint ids: most services
			// keep nothing at all.
			ids = &svcIDs{eps: map[netip.AddrPort]uint32{}}
		}
		ids.eps[ap] = id
		return id
	}

	// Most services are an address element and a select and a hairpin
	// element per endpoint: sized once, not grown.
	o := objects{elems: make([]elem, 0, 4+2*(len(s.ClusterEndpoints)+len(s.ExternalEndpoints)))}
	n := s.Name
	affinity := s.AffinityTimeout > 0
	epChains := map[string]bool{}

	// selectRules returns the rules that pick one of eps (never empty):
	// first the affinity lookups, then the random cascade.
	selectRules := func(eps []plan.Endpoint) []rule {
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
			r := rule{act: actDNAT, dnat: ep.AddrPort()}
			if affinity {
				r = rule{act: actGoto, chain: f.epChain(n, ep.AddrPort())}
			}
			if left := len(eps) - i; left > 1 {
				r.pick = uint32(left)
			}
			rules = append(rules, r)
			o.elems = append(o.elems, hairpinElem(f, ep))
		}
		return rules
	}

	noEndpoints := func(set, key string, t plan.Target) {
		e := elem{set: set, key: key, verdict: verdictDrop}
		if t == plan.TargetReject {
			e.verdict, e.chain = verdictGoto, f.rejectChain()
		}
		o.elems = append(o.elems, e)
	}

	o.elems = append(o.elems, elem{set: f.clusterIPs(), key: keyAddr(s.ClusterIP)})
	if simple(f, s) {
		simpleObjects(f, s, &o, noEndpoints)
		return o, ids
	}
	svc := f.svcChain(n)
	clusterTarget := s.ClusterTarget()
	cipKey := keyAddrProtoPort(s.ClusterIP, n.Protocol, s.Port)
	if clusterTarget == plan.TargetEndpoints {
		o.chains = append(o.chains, chain{name: svc, rules: selectRules(s.ClusterEndpoints)})
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
		extRules = append(extRules, selectRules(s.ExternalEndpoints)...)
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

// simple reports whether a service needs no chain of its own: no session
// affinity, no externalTrafficPolicy=Local short-circuit, no source ranges.
// That is almost every service, and it is what makes the ruleset cheap:
// such a service is only map elements.
func simple(f fam, s *plan.Service) bool {
	return s.AffinityTimeout == 0 && !s.ExternalPolicyLocal &&
		(len(s.LoadBalancerIPs) == 0 || len(familyPrefixes(f, s.LoadBalancerSourceRanges)) == 0)
}

// simpleObjects maps each of the service's addresses to the shared picker
// for its endpoint count, and lists its endpoints under that address in
// the select map.
func simpleObjects(f fam, s *plan.Service, o *objects, noEndpoints func(set, key string, t plan.Target)) {
	n := s.Name
	pick := func(vip netip.Addr, eps []plan.Endpoint, external bool) {
		key := keyAddrProtoPort(vip, n.Protocol, s.Port)
		shard := shardOf(key)
		c := pickerChain(f, len(eps), shard, external, false)
		o.chains = append(o.chains, c)
		o.elems = append(o.elems, elem{set: f.serviceIPs(), key: key, verdict: verdictGoto, chain: c.name})
		for i, ep := range eps {
			o.elems = append(o.elems,
				elem{set: f.selectMap(shard), key: keyIndex(key, i), data: dataAddrPort(ep.AddrPort())},
				hairpinElem(f, ep))
		}
	}
	if t := s.ClusterTarget(); t == plan.TargetEndpoints {
		pick(s.ClusterIP, s.ClusterEndpoints, false)
	} else {
		noEndpoints(f.noEndpoints(), keyAddrProtoPort(s.ClusterIP, n.Protocol, s.Port), t)
	}
	if !s.HasExternal() {
		return
	}
	t := s.ExternalTarget()
	for _, ip := range append(slices.Clone(s.ExternalIPs), s.LoadBalancerIPs...) {
		if t == plan.TargetEndpoints {
			pick(ip, s.ExternalEndpoints, true)
		} else {
			noEndpoints(f.noEndpoints(), keyAddrProtoPort(ip, n.Protocol, s.Port), t)
		}
	}
	if s.NodePort == 0 {
		return
	}
	key := keyProtoPort(n.Protocol, s.NodePort)
	if t != plan.TargetEndpoints {
		noEndpoints(f.noEndpointPorts(), key, t)
		return
	}
	shard := shardOf(key)
	c := pickerChain(f, len(s.ExternalEndpoints), shard, true, true)
	o.chains = append(o.chains, c)
	o.elems = append(o.elems, elem{set: f.nodePorts(), key: key, verdict: verdictGoto, chain: c.name})
	for i, ep := range s.ExternalEndpoints {
		o.elems = append(o.elems,
			elem{set: f.nodePortSelectMap(shard), key: keyIndex(key, i), data: dataAddrPort(ep.AddrPort())},
			hairpinElem(f, ep))
	}
}

// pickerChain is the shared chain that picks one of n endpoints from the
// select maps; external traffic is marked for masquerade first.
func pickerChain(f fam, n, shard int, external, nodePort bool) chain {
	switch {
	case nodePort:
		return chain{name: f.pickNodePort(n, shard), shared: true, rules: []rule{{mark: true, act: actMapDNATNodePort, set: f.nodePortSelectMap(shard), n: uint32(n)}}}
	case external:
		return chain{name: f.pickExternal(n, shard), shared: true, rules: []rule{{mark: true, act: actMapDNAT, set: f.selectMap(shard), n: uint32(n)}}}
	}
	return chain{name: f.pickCluster(n, shard), shared: true, rules: []rule{{act: actMapDNAT, set: f.selectMap(shard), n: uint32(n)}}}
}

func hairpinElem(f fam, ep plan.Endpoint) elem {
	key := keyAddrAddr(ep.IP, ep.IP)
	return elem{set: f.hairpinSet(shardOf(key)), key: key}
}
