package podsource

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Services is a watch cache of the cluster's services, for the variables containers get.
type Services struct {
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	lister   corelisters.ServiceLister
}

// NewServices returns the cache; Run starts it.
func NewServices(client kubernetes.Interface) *Services {
	f := informers.NewSharedInformerFactory(client, 0)
	inf := f.Core().V1().Services()
	i := inf.Informer()
	_ = i.SetTransform(func(obj any) (any, error) {
		if s, ok := obj.(*v1.Service); ok {
			s.ManagedFields = nil
			s.Annotations = nil
			s.Status = v1.ServiceStatus{}
		}
		return obj, nil
	})
	return &Services{factory: f, informer: i, lister: inf.Lister()}
}

// Run runs the watch until ctx ends.
func (s *Services) Run(ctx context.Context) {
	s.factory.Start(ctx.Done())
	<-ctx.Done()
	s.factory.Shutdown()
}

// WaitForSync waits for the first listing, so the first containers get complete variables.
func (s *Services) WaitForSync(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
		return fmt.Errorf("services did not sync within %s", timeout)
	}
	return nil
}

// ForPod returns the services of namespace plus default/kubernetes.
func (s *Services) ForPod(namespace string) []*v1.Service {
	out, _ := s.lister.Services(namespace).List(labels.Everything())
	if namespace != metav1.NamespaceDefault {
		if k, err := s.lister.Services(metav1.NamespaceDefault).Get("kubernetes"); err == nil {
			out = append(out, k)
		}
	}
	return out
}
