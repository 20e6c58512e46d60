// Package plan computes the desired, backend-neutral service dataplane of one
// IP family from the service and endpoints maps and the node's facts. Plans
// are plain data: backends (nftables, IPVS) diff them against the kernel.
package plan

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"
)

// Family is an IP family. A Plan covers exactly one family; a dual-stack node
// gets one plan (and one Dataplane) per family.
type Family string

const (
	IPv4 Family = "IPv4"
	IPv6 Family = "IPv6"
)

// Protocol is a layer-4 protocol of a service port.
type Protocol string

const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// ServicePortName names one port of one Service. It is comparable and is the
// key of Plan.Services.
type ServicePortName struct {
	Namespace string
	Name      string
	// Port is the service port's name ("" for an unnamed single port).
	Port     string
	Protocol Protocol
}

// String returns "ns/name:port/TCP", the form used in logs and chain names.
func (n ServicePortName) String() string {
	return fmt.Sprintf("%s/%s:%s/%s", n.Namespace, n.Name, n.Port, n.Protocol)
}

// Compare orders names by namespace, name, port, protocol.
func (n ServicePortName) Compare(o ServicePortName) int {
	for _, c := range [][2]string{{n.Namespace, o.Namespace}, {n.Name, o.Name}, {n.Port, o.Port}, {string(n.Protocol), string(o.Protocol)}} {
		if c[0] < c[1] {
			return -1
		}
		if c[0] > c[1] {
			return 1
		}
	}
	return 0
}

// Endpoint is one backend of a service port. Endpoints are comparable with ==.
type Endpoint struct {
	IP   netip.Addr
	Port uint16
	// Local is true when the endpoint runs on this node.
	Local bool
	// Conditions from the EndpointSlice (unset Ready counts as ready,
	// unset Serving follows Ready, like upstream).
	Ready, Serving, Terminating bool
	// Hints are the endpoint's topology hints as they apply to this node
	// (see topology.go). One byte of the struct's padding: Endpoint stays
	// 32 bytes.
	Hints Hints
}

// AddrPort returns the endpoint's address and port.
func (e Endpoint) AddrPort() netip.AddrPort { return netip.AddrPortFrom(e.IP, e.Port) }

// String returns "ip:port" ("[ip6]:port" for IPv6).
func (e Endpoint) String() string { return e.AddrPort().String() }

// Target says what a backend does with traffic for one category (cluster or
// external) of a service.
type Target uint8

const (
	// TargetEndpoints: load-balance across the category's endpoints.
	TargetEndpoints Target = iota
	// TargetReject: the service has no usable endpoints (HasEndpoints is
	// false); answer with
	// ICMP port unreachable (TCP RST is fine too), never blackhole.
	TargetReject
	// TargetDrop: this category has no endpoints but the service has some
	// (e.g. externalTrafficPolicy=Local and no local endpoint); drop, like
	// upstream.
	TargetDrop
)

func (t Target) String() string {
	switch t {
	case TargetEndpoints:
		return "endpoints"
	case TargetReject:
		return "reject"
	case TargetDrop:
		return "drop"
	}
	return fmt.Sprintf("Target(%d)", uint8(t))
}

// Service is one service port of one family, with every policy already
// applied. A Service in a Plan is immutable: the planner reuses the same
// pointer for an unchanged service across plans, so a backend may treat
// old == new as "nothing to do" and call Equal only otherwise.
type Service struct {
	Name ServicePortName
	// ClusterIP is the service's cluster IP in this family (always valid).
	ClusterIP netip.Addr
	Port      uint16
	// NodePort is 0 when the service has none. It is served on Plan.NodeIPs
	// (or on every local address when Plan.NodePortsOnAllLocalAddresses).
	NodePort uint16
	// ExternalIPs (spec.externalIPs) and LoadBalancerIPs (status ingress IPs
	// whose ipMode is not Proxy) of this family, sorted, deduplicated.
	ExternalIPs     []netip.Addr
	LoadBalancerIPs []netip.Addr
	// LoadBalancerSourceRanges, when not empty, are the only sources allowed
	// to reach LoadBalancerIPs; others are dropped. Sorted.
	LoadBalancerSourceRanges []netip.Prefix
	// AffinityTimeout is 0 without sessionAffinity=ClientIP.
	AffinityTimeout time.Duration

	// ClusterEndpoints serve traffic to ClusterIP (internalTrafficPolicy
	// applied; serving-terminating endpoints only when none is ready).
	// ExternalEndpoints serve NodePort, external and load-balancer traffic
	// (externalTrafficPolicy applied). Both sorted by IP then port.
	ClusterEndpoints  []Endpoint
	ExternalEndpoints []Endpoint

	// InternalPolicyLocal: internalTrafficPolicy=Local.
	InternalPolicyLocal bool
	// ExternalPolicyLocal: externalTrafficPolicy=Local. External traffic is
	// not masqueraded (the client source IP is kept). Like upstream, traffic
	// to an external destination that originates from a local pod or from
	// the node itself short-circuits to ClusterEndpoints (masqueraded when
	// from the node).
	ExternalPolicyLocal bool
	// HealthCheckNodePort is the node port (0 = none) on which the node
	// answers how many local endpoints the service has (ETP=Local only).
	HealthCheckNodePort uint16
	// HasEndpoints is true when some endpoint is usable by a category the
	// service uses. When false, all its traffic is rejected; when true, an
	// empty category's traffic is dropped (see ClusterTarget, ExternalTarget).
	HasEndpoints bool
}

// HasExternal reports whether the service accepts external traffic
// (node port, external IPs or load-balancer IPs).
func (s *Service) HasExternal() bool {
	return s.NodePort != 0 || len(s.ExternalIPs) > 0 || len(s.LoadBalancerIPs) > 0
}

// ClusterTarget says what to do with traffic to the cluster IP.
func (s *Service) ClusterTarget() Target {
	return s.target(len(s.ClusterEndpoints))
}

// ExternalTarget says what to do with external traffic.
func (s *Service) ExternalTarget() Target {
	return s.target(len(s.ExternalEndpoints))
}

func (s *Service) target(n int) Target {
	switch {
	case n > 0:
		return TargetEndpoints
	case s.HasEndpoints:
		return TargetDrop
	default:
		return TargetReject
	}
}

// Equal reports whether two services program the same dataplane.
func (s *Service) Equal(o *Service) bool {
	if s == o {
		return true
	}
	if s == nil || o == nil {
		return false
	}
	return s.Name == o.Name && s.ClusterIP == o.ClusterIP && s.Port == o.Port &&
		s.NodePort == o.NodePort && s.AffinityTimeout == o.AffinityTimeout &&
		s.InternalPolicyLocal == o.InternalPolicyLocal &&
		s.ExternalPolicyLocal == o.ExternalPolicyLocal &&
		s.HealthCheckNodePort == o.HealthCheckNodePort && s.HasEndpoints == o.HasEndpoints &&
		slices.Equal(s.ExternalIPs, o.ExternalIPs) &&
		slices.Equal(s.LoadBalancerIPs, o.LoadBalancerIPs) &&
		slices.Equal(s.LoadBalancerSourceRanges, o.LoadBalancerSourceRanges) &&
		slices.Equal(s.ClusterEndpoints, o.ClusterEndpoints) &&
		slices.Equal(s.ExternalEndpoints, o.ExternalEndpoints)
}

// Plan is the desired dataplane of one IP family.
type Plan struct {
	Family Family
	// Services holds every service port with a cluster IP in this family.
	// Headless and ExternalName services are never in it.
	Services map[ServicePortName]*Service
	// NodeIPs are the node addresses (this family) that serve node ports,
	// from nodePortAddresses (CIDRs, or "primary": the node's InternalIP).
	NodeIPs []netip.Addr
	// NodePortsOnAllLocalAddresses: serve node ports on every local address
	// (nodePortAddresses empty in iptables-compatible mode). NodeIPs is then
	// informational.
	NodePortsOnAllLocalAddresses bool
	// ClusterCIDRs are the pod networks of this family. Traffic to a service
	// from a source outside them is masqueraded (unless MasqueradeAll, which
	// masquerades everything). Empty means "unknown": masquerade nothing by
	// source, only hairpin and node-originated traffic.
	ClusterCIDRs  []netip.Prefix
	MasqueradeAll bool
}

// Names returns the service names in a deterministic order.
func (p *Plan) Names() []ServicePortName {
	names := make([]ServicePortName, 0, len(p.Services))
	for n := range p.Services {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return names[i].Compare(names[j]) < 0 })
	return names
}

// SortedServices returns the services ordered like Names.
func (p *Plan) SortedServices() []*Service {
	names := p.Names()
	out := make([]*Service, len(names))
	for i, n := range names {
		out[i] = p.Services[n]
	}
	return out
}
