package proxier

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kubenode/kubenode/common/watch"
)

// triggerTimeAnnotation feeds the network-programming latency metric; the
// shared slim transform drops annotations, so it is carried over.
const triggerTimeAnnotation = "endpoints.kubernetes.io/last-change-trigger-time"

// Handler receives the watched objects. *Proxier implements it.
type Handler interface {
	OnServiceUpdate(previous, current *v1.Service)
	OnServicesSynced()
	OnEndpointSliceUpdate(slice *discovery.EndpointSlice, removed bool)
	OnEndpointSlicesSynced()
	OnNodeUpdate(node *v1.Node)
}

// Informers watches Services, EndpointSlices (both without those another
// proxy implements, and without headless ones) and this Node, keeping slim
// copies, and forwards them to a Handler.
type Informers struct {
	services, slices, node watch.Informer
	h                      Handler
}

// NewInformers builds the informers (starting nothing). resync 0 disables
// informer resyncs: the proxier's own periodic full sync repairs drift.
func NewInformers(client kubernetes.Interface, nodeName string, resync time.Duration, h Handler) (*Informers, error) {
	in := &Informers{
		services: watch.NewServiceInformer(client, resync, watch.ProxyableOnly),
		slices:   watch.NewEndpointSliceInformer(client, resync, watch.ProxyableOnly),
		node:     watch.NewNodeInformer(client, nodeName, resync),
		h:        h,
	}
	if err := in.slices.SetTransform(slimSlice); err != nil {
		return nil, fmt.Errorf("endpointslice informer: %w", err)
	}
	if _, err := watch.AddHandler(in.services, watch.Handler[*v1.Service]{
		OnAdd:    func(s *v1.Service) { h.OnServiceUpdate(nil, proxied(s)) },
		OnUpdate: func(old, cur *v1.Service) { h.OnServiceUpdate(proxied(old), proxied(cur)) },
		OnDelete: func(s *v1.Service) { h.OnServiceUpdate(proxied(s), nil) },
	}); err != nil {
		return nil, fmt.Errorf("service informer: %w", err)
	}
	if _, err := watch.AddHandler(in.slices, watch.Handler[*discovery.EndpointSlice]{
		OnAdd: func(s *discovery.EndpointSlice) { h.OnEndpointSliceUpdate(proxied(s), false) },
		OnUpdate: func(old, cur *discovery.EndpointSlice) {
			if s := proxied(cur); s != nil {
				h.OnEndpointSliceUpdate(s, false)
			} else if s := proxied(old); s != nil { // now excluded
				h.OnEndpointSliceUpdate(s, true)
			}
		},
		OnDelete: func(s *discovery.EndpointSlice) { h.OnEndpointSliceUpdate(proxied(s), true) },
	}); err != nil {
		return nil, fmt.Errorf("endpointslice informer: %w", err)
	}
	if _, err := watch.AddHandler(in.node, watch.Handler[*v1.Node]{
		OnAdd:    h.OnNodeUpdate,
		OnUpdate: func(_, cur *v1.Node) { h.OnNodeUpdate(cur) },
		// A deleted Node keeps the last addresses: rules stay.
	}); err != nil {
		return nil, fmt.Errorf("node informer: %w", err)
	}
	return in, nil
}

// Run runs the informers, reports sync to the handler and blocks until ctx
// ends. If the API server is unreachable the informers keep retrying and
// nothing is delivered: the rules stay as they are.
func (in *Informers) Run(ctx context.Context) {
	done := make(chan struct{})
	for _, inf := range []watch.Informer{in.services, in.slices, in.node} {
		go func() { inf.RunWithContext(ctx); done <- struct{}{} }()
	}
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), in.services.HasSynced) {
			in.h.OnServicesSynced()
		}
	}()
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), in.slices.HasSynced) {
			in.h.OnEndpointSlicesSynced()
		}
	}()
	for range 3 {
		<-done
	}
}

type labeled interface{ GetLabels() map[string]string }

// proxied applies the informers' label selector again, so an object that
// gains an excluding label is treated as deleted and nothing depends on the
// server (or a fake) filtering watches. It returns nil for excluded objects.
func proxied[T labeled](obj T) T {
	var zero T
	labels := obj.GetLabels()
	_, other := labels[watch.LabelServiceProxyName]
	_, headless := labels[v1.IsHeadlessService]
	if other || headless {
		return zero
	}
	return obj
}

// slimSlice is watch.SlimEndpointSlice keeping the trigger-time annotation.
func slimSlice(obj any) (any, error) {
	var trigger string
	if s, ok := obj.(*discovery.EndpointSlice); ok {
		trigger = s.Annotations[triggerTimeAnnotation]
	}
	out, err := watch.SlimEndpointSlice(obj)
	if s, ok := out.(*discovery.EndpointSlice); ok && err == nil && trigger != "" {
		s.Annotations = map[string]string{triggerTimeAnnotation: trigger}
	}
	return out, err
}
