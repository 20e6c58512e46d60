package podsource

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// APISource watches the pods bound to this node.
type APISource struct {
	client   kubernetes.Interface
	nodeName string
	pods     *Manager
	log      *zap.Logger
	informer cache.SharedIndexInformer
	factory  informers.SharedInformerFactory
}

// NodeSelector is the field selector for the pods bound to a node.
func NodeSelector(nodeName string) string {
	return fields.OneTermEqualSelector("spec.nodeName", nodeName).String()
}

// NewAPISource returns the source; Run starts the watch.
func NewAPISource(client kubernetes.Interface, nodeName string, pods *Manager, log *zap.Logger) *APISource {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = NodeSelector(nodeName)
	}))
	inf := f.Core().V1().Pods().Informer()
	_ = inf.SetTransform(func(obj any) (any, error) {
		if p, ok := obj.(*v1.Pod); ok {
			p.ManagedFields = nil // never read here; keeps memory flat
		}
		return obj, nil
	})
	s := &APISource{client: client, nodeName: nodeName, pods: pods, log: log, informer: inf, factory: f}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.set(obj) },
		UpdateFunc: func(_, obj any) { s.set(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*v1.Pod); ok {
				pods.DeleteAPIPod(p)
			}
		},
	})
	return s
}

func (s *APISource) set(obj any) {
	if p, ok := obj.(*v1.Pod); ok {
		s.pods.SetAPIPod(p)
	}
}

// Run runs the watch until ctx ends.
func (s *APISource) Run(ctx context.Context) {
	s.factory.Start(ctx.Done())
	<-ctx.Done()
	s.factory.Shutdown()
}

// WaitForSync waits until the first listing arrived.
func (s *APISource) WaitForSync(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
		return fmt.Errorf("pods of node %s did not sync within %s", s.nodeName, timeout)
	}
	return nil
}

// Mirrors keeps a mirror pod in the API for every static pod.
type Mirrors struct {
	client   kubernetes.Interface
	nodeName string
	pods     *Manager
	log      *zap.Logger
}

// NewMirrors returns the mirror pod keeper.
func NewMirrors(client kubernetes.Interface, nodeName string, pods *Manager, log *zap.Logger) *Mirrors {
	return &Mirrors{client: client, nodeName: nodeName, pods: pods, log: log}
}

// Run reconciles mirror pods every period.
func (m *Mirrors) Run(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		if err := m.Sync(ctx); err != nil {
			m.log.Warn("mirror pod sync", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sync creates missing mirror pods, replaces outdated ones and deletes orphans.
func (m *Mirrors) Sync(ctx context.Context) error {
	static, mirrors := m.pods.Static()
	var firstErr error
	note := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for uid, mirror := range mirrors {
		if _, ok := static[uid]; ok {
			continue
		}
		note(m.delete(ctx, mirror))
	}
	var node *v1.Node
	for uid, p := range static {
		mirror := mirrors[uid]
		if mirror != nil && mirror.DeletionTimestamp != nil {
			// Someone deleted the mirror pod: finish the delete (the static pod keeps running)
			// and recreate it once it is gone.
			note(m.delete(ctx, mirror))
			continue
		}
		if mirror != nil {
			continue
		}
		if node == nil {
			n, err := m.client.CoreV1().Nodes().Get(ctx, m.nodeName, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("get node %s for mirror pods: %w", m.nodeName, err)
			}
			node = n
		}
		// An outdated mirror (the manifest changed) has another hash: find and replace it.
		existing, err := m.client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err == nil && IsMirror(existing) && existing.Annotations[AnnotationMirror] != string(uid) {
			note(m.delete(ctx, existing))
			continue // recreate on a later pass, once it is gone
		}
		note(m.create(ctx, p, node))
	}
	return firstErr
}

func (m *Mirrors) create(ctx context.Context, p *v1.Pod, node *v1.Node) error {
	mirror := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, Labels: p.Labels, Annotations: map[string]string{},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID, Controller: ptrTo(true)}},
		},
		Spec: *p.Spec.DeepCopy(),
	}
	for k, v := range p.Annotations {
		mirror.Annotations[k] = v
	}
	mirror.Annotations[AnnotationMirror] = string(p.UID)
	_, err := m.client.CoreV1().Pods(p.Namespace).Create(ctx, mirror, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create mirror pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	if err == nil {
		m.log.Info("mirror pod created", zap.String("pod", p.Namespace+"/"+p.Name))
	}
	return nil
}

func (m *Mirrors) delete(ctx context.Context, mirror *v1.Pod) error {
	uid := mirror.UID
	err := m.client.CoreV1().Pods(mirror.Namespace).Delete(ctx, mirror.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptrTo(int64(0)), Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete mirror pod %s/%s: %w", mirror.Namespace, mirror.Name, err)
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }
