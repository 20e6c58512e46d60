package watch

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// LabelServiceProxyName marks Services (and their EndpointSlices) that a
// proxy other than the default kube-proxy implements.
const LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"

// Informer is a shared informer with a name that sync errors and logs use.
type Informer struct {
	cache.SharedIndexInformer
	name string
}

// Named gives inf a name, for informers built elsewhere.
func Named(name string, inf cache.SharedIndexInformer) Informer {
	return Informer{SharedIndexInformer: inf, name: name}
}

// Name is what WaitForSync reports when this informer did not sync.
func (i Informer) Name() string { return i.name }

// TweakListOptions changes the list and watch requests of an informer.
type TweakListOptions = func(*metav1.ListOptions)

// NodeNameSelector selects the pods bound to node.
func NodeNameSelector(node string) TweakListOptions {
	return func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
	}
}

// ObjectNameSelector selects the one object named name.
func ObjectNameSelector(name string) TweakListOptions {
	return func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector(metav1.ObjectNameField, name).String()
	}
}

// ProxyableOnly is the label selector upstream kube-proxy lists Services and
// EndpointSlices with: it skips objects that another proxy implements
// (service-proxy-name) and the EndpointSlices of headless Services.
func ProxyableOnly(o *metav1.ListOptions) {
	o.LabelSelector = "!" + LabelServiceProxyName + ",!" + corev1.IsHeadlessService
}

// NewPodInformer watches the pods bound to node in all namespaces, the
// kubelet's view of its work. The cache is indexed by namespace.
func NewPodInformer(client kubernetes.Interface, node string, resync time.Duration) Informer {
	inf := coreinformers.NewFilteredPodInformer(client, metav1.NamespaceAll, resync,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, NodeNameSelector(node))
	mustSetTransform(inf, StripMetadata)
	return Named("pods on node "+node, inf)
}

// NewNodeInformer watches the agent's own Node object.
func NewNodeInformer(client kubernetes.Interface, node string, resync time.Duration) Informer {
	inf := coreinformers.NewFilteredNodeInformer(client, resync, cache.Indexers{}, ObjectNameSelector(node))
	mustSetTransform(inf, StripMetadata)
	return Named("node "+node, inf)
}

// NewServiceInformer watches Services in all namespaces, slimmed by
// SlimService. tweak (ProxyableOnly, or nil for all) narrows the list.
func NewServiceInformer(client kubernetes.Interface, resync time.Duration, tweak TweakListOptions) Informer {
	inf := coreinformers.NewFilteredServiceInformer(client, metav1.NamespaceAll, resync,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, tweak)
	mustSetTransform(inf, SlimService)
	return Named("services", inf)
}

// NewEndpointSliceInformer watches discovery/v1 EndpointSlices in all
// namespaces, slimmed by SlimEndpointSlice. tweak (ProxyableOnly, or nil for
// all) narrows the list.
func NewEndpointSliceInformer(client kubernetes.Interface, resync time.Duration, tweak TweakListOptions) Informer {
	inf := discoveryinformers.NewFilteredEndpointSliceInformer(client, metav1.NamespaceAll, resync,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, tweak)
	mustSetTransform(inf, SlimEndpointSlice)
	return Named("endpointslices", inf)
}

// mustSetTransform sets the transform on an informer that was just built;
// SetTransform fails only once an informer has started.
func mustSetTransform(inf cache.SharedIndexInformer, t cache.TransformFunc) {
	if err := inf.SetTransform(t); err != nil {
		panic(err)
	}
}
