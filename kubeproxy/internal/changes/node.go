package changes

import (
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
)

// NodeInfo is what the proxy uses of its own Node object.
type NodeInfo struct {
	Name string
	// InternalIPs are the node's InternalIP addresses, in the Node's order
	// (the first of each family is that family's primary address).
	InternalIPs []netip.Addr
	// Zone is the node's topology.kubernetes.io/zone label: endpoints
	// hinted for it are preferred (topology-aware routing).
	Zone string
}

// NodeInfoOf returns the slim form of node (zero NodeInfo for nil).
func NodeInfoOf(node *v1.Node) NodeInfo {
	if node == nil {
		return NodeInfo{}
	}
	info := NodeInfo{Name: node.Name, Zone: node.Labels[v1.LabelTopologyZone]}
	for _, a := range node.Status.Addresses {
		if a.Type != v1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			info.InternalIPs = append(info.InternalIPs, ip.Unmap())
		}
	}
	return info
}

// Equal reports whether two NodeInfos are the same.
func (n NodeInfo) Equal(o NodeInfo) bool {
	return n.Name == o.Name && n.Zone == o.Zone && slices.Equal(n.InternalIPs, o.InternalIPs)
}
