package proxier

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Labels that exclude a Service (and its slices) from this proxy, like
// upstream: another proxy implementation owns it, or it is headless.
const (
	labelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	labelHeadless         = "service.kubernetes.io/headless"
	triggerTimeAnnotation = "endpoints.kubernetes.io/last-change-trigger-time"
)

// Handler receives the watched objects. *Proxier implements it.
type Handler interface {
	OnServiceUpdate(previous, current *v1.Service)
	OnServicesSynced()
	OnEndpointSliceUpdate(slice *discovery.EndpointSlice, removed bool)
	OnEndpointSlicesSynced()
	OnNodeUpdate(node *v1.Node)
}

// Informers watches Services, EndpointSlices and this Node, storing slim
// copies, and forwards them to a Handler.
type Informers struct {
	shared informers.SharedInformerFactory
	node   informers.SharedInformerFactory
	h      Handler
}

// NewInformers builds the informers (starting nothing). resync 0 disables
// informer resyncs: the proxier's own periodic full sync repairs drift.
func NewInformers(client kubernetes.Interface, nodeName string, resync time.Duration, h Handler) (*Informers, error) {
	selector := "!" + labelServiceProxyName + ",!" + labelHeadless
	shared := informers.NewSharedInformerFactoryWithOptions(client, resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }),
		informers.WithTransform(slim))
	node := informers.NewSharedInformerFactoryWithOptions(client, resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", nodeName).String()
		}),
		informers.WithTransform(slim))
	in := &Informers{shared: shared, node: node, h: h}

	svc := shared.Core().V1().Services().Informer()
	if _, err := svc.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { h.OnServiceUpdate(nil, asService(obj)) },
		UpdateFunc: func(old, cur any) {
			h.OnServiceUpdate(asService(old), asService(cur))
		},
		DeleteFunc: func(obj any) { h.OnServiceUpdate(asService(obj), nil) },
	}); err != nil {
		return nil, fmt.Errorf("service informer: %w", err)
	}
	eps := shared.Discovery().V1().EndpointSlices().Informer()
	if _, err := eps.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { h.OnEndpointSliceUpdate(asSlice(obj), false) },
		UpdateFunc: func(old, cur any) {
			if s := asSlice(cur); s != nil {
				h.OnEndpointSliceUpdate(s, false)
			} else if s := asSlice(old); s != nil { // now excluded
				h.OnEndpointSliceUpdate(s, true)
			}
		},
		DeleteFunc: func(obj any) { h.OnEndpointSliceUpdate(asSlice(obj), true) },
	}); err != nil {
		return nil, fmt.Errorf("endpointslice informer: %w", err)
	}
	nodes := node.Core().V1().Nodes().Informer()
	if _, err := nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { h.OnNodeUpdate(asNode(obj)) },
		UpdateFunc: func(_, cur any) { h.OnNodeUpdate(asNode(cur)) },
		// A deleted Node keeps the last addresses: rules stay.
	}); err != nil {
		return nil, fmt.Errorf("node informer: %w", err)
	}
	return in, nil
}

// Run starts the informers, reports sync to the handler and blocks until
// ctx ends. If the API server is unreachable the informers keep retrying and
// nothing is delivered: the rules stay as they are.
func (in *Informers) Run(ctx context.Context) {
	in.shared.Start(ctx.Done())
	in.node.Start(ctx.Done())
	svc := in.shared.Core().V1().Services().Informer()
	eps := in.shared.Discovery().V1().EndpointSlices().Informer()
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), svc.HasSynced) {
			in.h.OnServicesSynced()
		}
	}()
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), eps.HasSynced) {
			in.h.OnEndpointSlicesSynced()
		}
	}()
	<-ctx.Done()
	in.shared.Shutdown()
	in.node.Shutdown()
}

// unwrap returns the object inside a tombstone.
func unwrap(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

// asService and asSlice also apply the label selector themselves, so an
// object that gains an excluding label is treated as deleted and nothing
// depends on the server (or a fake) filtering watches.
func asService(obj any) *v1.Service {
	s, _ := unwrap(obj).(*v1.Service)
	if s == nil || excluded(s.Labels) {
		return nil
	}
	return s
}

func asSlice(obj any) *discovery.EndpointSlice {
	s, _ := unwrap(obj).(*discovery.EndpointSlice)
	if s == nil || excluded(s.Labels) {
		return nil
	}
	return s
}

func excluded(labels map[string]string) bool {
	_, other := labels[labelServiceProxyName]
	_, headless := labels[labelHeadless]
	return other || headless
}

func asNode(obj any) *v1.Node {
	n, _ := unwrap(obj).(*v1.Node)
	return n
}

// slim drops what the proxy never reads, keeping memory flat with many
// services.
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *v1.Service:
		o.ManagedFields = nil
		o.Annotations = nil
	case *discovery.EndpointSlice:
		o.ManagedFields = nil
		if t, ok := o.Annotations[triggerTimeAnnotation]; ok {
			o.Annotations = map[string]string{triggerTimeAnnotation: t}
		} else {
			o.Annotations = nil
		}
		for i := range o.Endpoints {
			o.Endpoints[i].TargetRef = nil
			o.Endpoints[i].Hints = nil
			o.Endpoints[i].DeprecatedTopology = nil
		}
	case *v1.Node:
		o.ManagedFields = nil
		o.Annotations = nil
		o.Spec = v1.NodeSpec{}
		o.Status = v1.NodeStatus{Addresses: o.Status.Addresses}
	}
	return obj, nil
}
