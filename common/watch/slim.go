package watch

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StripMetadata is a cache.TransformFunc that drops what no agent reads but
// every object carries: managedFields and the
// kubectl.kubernetes.io/last-applied-configuration annotation, which can be
// larger than the rest of the object. Anything without object metadata
// passes through unchanged. It edits in place, which informers allow.
func StripMetadata(obj any) (any, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return obj, nil
	}
	m.SetManagedFields(nil)
	if a := m.GetAnnotations(); a != nil {
		if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
			delete(a, corev1.LastAppliedConfigAnnotation)
			m.SetAnnotations(a)
		}
	}
	return obj, nil
}

// slimMeta keeps the identity, labels (a proxy selects by them, and
// EndpointSlices name their Service in one) and lifecycle of an object.
func slimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		Generation:        m.Generation,
		CreationTimestamp: m.CreationTimestamp,
		DeletionTimestamp: m.DeletionTimestamp,
		Labels:            m.Labels,
	}
}

// SlimService is a cache.TransformFunc that keeps what a proxy reads from a
// Service (addresses, ports, type, traffic policies, session affinity, IP
// families, load-balancer status) and what the kubelet needs for service
// environment variables (a subset). It drops the selector, annotations,
// owner references, finalizers and status conditions. Other objects pass
// through unchanged.
func SlimService(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	s := svc.Spec
	return &corev1.Service{
		TypeMeta:   svc.TypeMeta,
		ObjectMeta: slimMeta(svc.ObjectMeta),
		Spec: corev1.ServiceSpec{
			Type:                     s.Type,
			Ports:                    s.Ports,
			ClusterIP:                s.ClusterIP,
			ClusterIPs:               s.ClusterIPs,
			IPFamilies:               s.IPFamilies,
			IPFamilyPolicy:           s.IPFamilyPolicy,
			ExternalIPs:              s.ExternalIPs,
			ExternalName:             s.ExternalName,
			LoadBalancerIP:           s.LoadBalancerIP,
			LoadBalancerSourceRanges: s.LoadBalancerSourceRanges,
			SessionAffinity:          s.SessionAffinity,
			SessionAffinityConfig:    s.SessionAffinityConfig,
			ExternalTrafficPolicy:    s.ExternalTrafficPolicy,
			InternalTrafficPolicy:    s.InternalTrafficPolicy,
			HealthCheckNodePort:      s.HealthCheckNodePort,
			TrafficDistribution:      s.TrafficDistribution,
		},
		Status: corev1.ServiceStatus{LoadBalancer: svc.Status.LoadBalancer},
	}, nil
}

// SlimEndpointSlice is a cache.TransformFunc that keeps what a proxy reads
// from an EndpointSlice: address type, ports, and per endpoint its
// addresses, conditions, node, zone and topology hints. It drops target
// references, hostnames, deprecated topology, annotations and owner
// references. Other objects pass through unchanged.
func SlimEndpointSlice(obj any) (any, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	var eps []discoveryv1.Endpoint
	if es.Endpoints != nil {
		eps = make([]discoveryv1.Endpoint, len(es.Endpoints))
	}
	for i, ep := range es.Endpoints {
		eps[i] = discoveryv1.Endpoint{
			Addresses:  ep.Addresses,
			Conditions: ep.Conditions,
			NodeName:   ep.NodeName,
			Zone:       ep.Zone,
			Hints:      ep.Hints,
		}
	}
	return &discoveryv1.EndpointSlice{
		TypeMeta:    es.TypeMeta,
		ObjectMeta:  slimMeta(es.ObjectMeta),
		AddressType: es.AddressType,
		Endpoints:   eps,
		Ports:       es.Ports,
	}, nil
}
