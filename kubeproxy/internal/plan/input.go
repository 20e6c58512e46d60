package plan

import (
	"net/netip"
	"slices"
	"time"
)

// ServicePort is everything the planner needs about one port of a Service,
// for every family the Service has.
type ServicePort struct {
	Name ServicePortName
	// ClusterIPs are the service's cluster IPs (one per family).
	ClusterIPs               []netip.Addr
	Port                     uint16
	NodePort                 uint16
	ExternalIPs              []netip.Addr
	LoadBalancerIPs          []netip.Addr
	LoadBalancerSourceRanges []netip.Prefix
	AffinityTimeout          time.Duration
	InternalPolicyLocal      bool
	ExternalPolicyLocal      bool
	HealthCheckNodePort      uint16
}

// Equal reports whether two service ports are the same.
func (s *ServicePort) Equal(o *ServicePort) bool {
	if s == o {
		return true
	}
	if s == nil || o == nil {
		return false
	}
	return s.Name == o.Name && s.Port == o.Port && s.NodePort == o.NodePort &&
		s.AffinityTimeout == o.AffinityTimeout && s.InternalPolicyLocal == o.InternalPolicyLocal &&
		s.ExternalPolicyLocal == o.ExternalPolicyLocal && s.HealthCheckNodePort == o.HealthCheckNodePort &&
		slices.Equal(s.ClusterIPs, o.ClusterIPs) && slices.Equal(s.ExternalIPs, o.ExternalIPs) &&
		slices.Equal(s.LoadBalancerIPs, o.LoadBalancerIPs) &&
		slices.Equal(s.LoadBalancerSourceRanges, o.LoadBalancerSourceRanges)
}

// ServiceMap holds every proxied service port.
type ServiceMap map[ServicePortName]*ServicePort

// EndpointsMap holds the endpoints of every service port, sorted by IP then
// port, without duplicates. Both families may be present; the planner keeps
// the ones of its family. A list is never modified once it is in the map
// (changes replace it), so plans share the lists instead of copying them.
type EndpointsMap map[ServicePortName][]Endpoint
