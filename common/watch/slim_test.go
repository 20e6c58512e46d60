package watch

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

var (
	created = metav1.Date(2026, 1, 2, 3, 4, 5, 0, metav1.Now().Location())
	fatMeta = metav1.ObjectMeta{
		Name: "web", Namespace: "shop", UID: "uid-1", ResourceVersion: "42", Generation: 3,
		CreationTimestamp: created,
		Labels:            map[string]string{"app": "web", discoveryv1.LabelServiceName: "web"},
		Annotations: map[string]string{
			corev1.LastAppliedConfigAnnotation: `{"a":"huge"}`,
			"team":                             "payments",
		},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
		OwnerReferences: []metav1.OwnerReference{{Kind: "Service", Name: "web", UID: "uid-0"}},
		Finalizers:      []string{"example.com/keep"},
	}
	slimmedMeta = metav1.ObjectMeta{
		Name: "web", Namespace: "shop", UID: "uid-1", ResourceVersion: "42", Generation: 3,
		CreationTimestamp: created,
		Labels:            map[string]string{"app": "web", discoveryv1.LabelServiceName: "web"},
	}
)

func fatService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: *fatMeta.DeepCopy(),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{
				Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 30080,
			}},
			ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00::10"},
			IPFamilies:               []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			IPFamilyPolicy:           ptr.To(corev1.IPFamilyPolicyPreferDualStack),
			ExternalIPs:              []string{"192.0.2.1"},
			LoadBalancerSourceRanges: []string{"198.51.100.0/24"},
			SessionAffinity:          corev1.ServiceAffinityClientIP,
			SessionAffinityConfig:    &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}},
			ExternalTrafficPolicy:    corev1.ServiceExternalTrafficPolicyLocal,
			InternalTrafficPolicy:    ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
			HealthCheckNodePort:      31000,
			TrafficDistribution:      ptr.To("PreferClose"),
			PublishNotReadyAddresses: true,
			LoadBalancerClass:        ptr.To("example.com/lb"),
		},
		Status: corev1.ServiceStatus{
			LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.5", IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}},
			Conditions:   []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue}},
		},
	}
}

func fatSlice() *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  *fatMeta.DeepCopy(),
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:          []string{"10.244.1.5"},
			Conditions:         discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			Hostname:           ptr.To("web-0"),
			TargetRef:          &corev1.ObjectReference{Kind: "Pod", Name: "web-0", Namespace: "shop"},
			DeprecatedTopology: map[string]string{"kubernetes.io/hostname": "node-1"},
			NodeName:           ptr.To("node-1"),
			Zone:               ptr.To("zone-a"),
			Hints:              &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}}, ForNodes: []discoveryv1.ForNode{{Name: "node-1"}}},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
	}
}

func TestTransforms(t *testing.T) {
	tests := []struct {
		name      string
		transform func(any) (any, error)
		in        any
		want      any
	}{
		{
			name: "service keeps what a proxy reads", transform: SlimService, in: fatService(),
			want: &corev1.Service{
				ObjectMeta: slimmedMeta,
				Spec: corev1.ServiceSpec{
					Type: corev1.ServiceTypeLoadBalancer,
					Ports: []corev1.ServicePort{{
						Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 30080,
					}},
					ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00::10"},
					IPFamilies:               []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
					IPFamilyPolicy:           ptr.To(corev1.IPFamilyPolicyPreferDualStack),
					ExternalIPs:              []string{"192.0.2.1"},
					LoadBalancerSourceRanges: []string{"198.51.100.0/24"},
					SessionAffinity:          corev1.ServiceAffinityClientIP,
					SessionAffinityConfig:    &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}},
					ExternalTrafficPolicy:    corev1.ServiceExternalTrafficPolicyLocal,
					InternalTrafficPolicy:    ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
					HealthCheckNodePort:      31000,
					TrafficDistribution:      ptr.To("PreferClose"),
				},
				Status: corev1.ServiceStatus{
					LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.5", IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}},
				},
			},
		},
		{
			name: "external name service", transform: SlimService,
			in:   &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}},
			want: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}},
		},
		{
			name: "endpoint slice keeps what a proxy reads", transform: SlimEndpointSlice, in: fatSlice(),
			want: &discoveryv1.EndpointSlice{
				ObjectMeta:  slimmedMeta,
				AddressType: discoveryv1.AddressTypeIPv4,
				Endpoints: []discoveryv1.Endpoint{{
					Addresses:  []string{"10.244.1.5"},
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
					NodeName:   ptr.To("node-1"),
					Zone:       ptr.To("zone-a"),
					Hints:      &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}}, ForNodes: []discoveryv1.ForNode{{Name: "node-1"}}},
				}},
				Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
			},
		},
		{
			name: "pod loses managed fields and last-applied only", transform: StripMetadata,
			in: &corev1.Pod{ObjectMeta: *fatMeta.DeepCopy(), Spec: corev1.PodSpec{NodeName: "node-1"}},
			want: &corev1.Pod{
				ObjectMeta: func() metav1.ObjectMeta {
					m := *fatMeta.DeepCopy()
					m.ManagedFields = nil
					m.Annotations = map[string]string{"team": "payments"}
					return m
				}(),
				Spec: corev1.PodSpec{NodeName: "node-1"},
			},
		},
		{
			name: "node without annotations", transform: StripMetadata,
			in:   &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}}},
			want: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}},
		},
		{name: "service transform passes other types", transform: SlimService, in: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}, want: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}},
		{name: "slice transform passes other types", transform: SlimEndpointSlice, in: "not an object", want: "not an object"},
		{name: "strip passes non-objects", transform: StripMetadata, in: 42, want: 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.transform(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("transform (-want +got):\n%s", diff)
			}
			// Informers may hand an object to the transform again.
			again, err := tt.transform(got)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, again); diff != "" {
				t.Fatalf("transform is not idempotent (-want +got):\n%s", diff)
			}
		})
	}
}

// The informers store slim objects, still of the real API types.
func TestInformersCacheSlimObjects(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: *fatMeta.DeepCopy(), Spec: corev1.PodSpec{NodeName: "node-1"}}
	client := fake.NewClientset(fatService(), fatSlice(), pod)
	svcs := NewServiceInformer(client, 0, nil)
	slices := NewEndpointSliceInformer(client, 0, nil)
	pods := NewPodInformer(client, "node-1", 0)
	runInformers(t, svcs, slices, pods)

	obj, ok, err := svcs.GetStore().GetByKey("shop/web")
	if err != nil || !ok {
		t.Fatalf("service shop/web not cached: %v", err)
	}
	svc := obj.(*corev1.Service)
	if svc.Spec.Selector != nil || svc.Annotations != nil || svc.ManagedFields != nil || svc.Spec.ClusterIP != "10.96.0.10" {
		t.Errorf("cached service not slim: %+v", svc)
	}

	obj, ok, err = slices.GetStore().GetByKey("shop/web")
	if err != nil || !ok {
		t.Fatalf("endpointslice shop/web not cached: %v", err)
	}
	es := obj.(*discoveryv1.EndpointSlice)
	if es.Endpoints[0].TargetRef != nil || es.Endpoints[0].Addresses[0] != "10.244.1.5" || es.Labels[discoveryv1.LabelServiceName] != "web" {
		t.Errorf("cached endpointslice not slim: %+v", es)
	}

	obj, ok, err = pods.GetStore().GetByKey("shop/web")
	if err != nil || !ok {
		t.Fatalf("pod shop/web not cached: %v", err)
	}
	p := obj.(*corev1.Pod)
	if p.ManagedFields != nil || p.Annotations[corev1.LastAppliedConfigAnnotation] != "" || p.Annotations["team"] != "payments" {
		t.Errorf("cached pod metadata not stripped: %+v", p.ObjectMeta)
	}

	// The API server's copy is untouched.
	stored, err := client.CoreV1().Services("shop").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stored.Spec.Selector == nil {
		t.Error("transform changed the clientset's object")
	}
}
