package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	nodelisters "k8s.io/client-go/listers/node/v1"
	"k8s.io/client-go/tools/cache"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ErrNoRuntimeClasses is returned for a pod that names a RuntimeClass when the kubelet has no
// API server to look it up in (standalone).
var ErrNoRuntimeClasses = errors.New("the kubelet runs without an API server and cannot look RuntimeClasses up")

// RuntimeClassError says why a pod's runtimeClassName could not be resolved.
type RuntimeClassError struct {
	Pod   string // namespace/name
	Class string
	Err   error
}

func (e *RuntimeClassError) Error() string {
	return fmt.Sprintf("pod %s: spec.runtimeClassName %q: %v", e.Pod, e.Class, e.Err)
}

func (e *RuntimeClassError) Unwrap() error { return e.Err }

// RuntimeClassGetter finds a RuntimeClass by name.
type RuntimeClassGetter interface {
	RuntimeClass(ctx context.Context, name string) (*nodev1.RuntimeClass, error)
}

// RuntimeHandler returns the CRI runtime handler for a pod's sandbox: "" (the runtime's default)
// without spec.runtimeClassName, else the handler of the named RuntimeClass. classes may be nil
// when the kubelet has no API server. The RuntimeClass's overhead is not applied here: admission
// already added it to the pod's spec.overhead.
func RuntimeHandler(ctx context.Context, pod *v1.Pod, classes RuntimeClassGetter) (string, error) {
	name := pod.Spec.RuntimeClassName
	if name == nil || *name == "" {
		return "", nil
	}
	fail := func(err error) (string, error) {
		return "", &RuntimeClassError{Pod: pod.Namespace + "/" + pod.Name, Class: *name, Err: err}
	}
	if classes == nil {
		return fail(ErrNoRuntimeClasses)
	}
	rc, err := classes.RuntimeClass(ctx, *name)
	if apierrors.IsNotFound(err) {
		return fail(fmt.Errorf("RuntimeClass %q not found", *name))
	}
	if err != nil {
		return fail(fmt.Errorf("look up RuntimeClass: %w", err))
	}
	if rc.Handler == "" {
		return fail(fmt.Errorf("RuntimeClass %q has no handler", *name))
	}
	return rc.Handler, nil
}

// RuntimeClasses is a watch cache of the cluster's RuntimeClasses (node.k8s.io/v1). The node
// authorizer lets a node get, list and watch them; there are few, so one cluster-wide watch is
// cheaper than a GET per sandbox.
type RuntimeClasses struct {
	client   kubernetes.Interface
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	lister   nodelisters.RuntimeClassLister
}

var _ RuntimeClassGetter = (*RuntimeClasses)(nil)

// NewRuntimeClasses returns the cache; Run starts it.
func NewRuntimeClasses(client kubernetes.Interface) *RuntimeClasses {
	f := informers.NewSharedInformerFactory(client, 0)
	inf := f.Node().V1().RuntimeClasses()
	i := inf.Informer()
	_ = i.SetTransform(func(obj any) (any, error) {
		if rc, ok := obj.(*nodev1.RuntimeClass); ok {
			rc.ManagedFields = nil
		}
		return obj, nil
	})
	return &RuntimeClasses{client: client, factory: f, informer: i, lister: inf.Lister()}
}

// Run runs the watch until ctx ends.
func (r *RuntimeClasses) Run(ctx context.Context) {
	r.factory.Start(ctx.Done())
	<-ctx.Done()
	r.factory.Shutdown()
}

// RuntimeClass returns the named RuntimeClass from the cache. Until the first listing is in, it
// asks the API server, so a pod synced right at kubelet start is not failed for nothing.
func (r *RuntimeClasses) RuntimeClass(ctx context.Context, name string) (*nodev1.RuntimeClass, error) {
	rc, err := r.lister.Get(name)
	if err == nil || r.informer.HasSynced() || !apierrors.IsNotFound(err) {
		return rc, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return r.client.NodeV1().RuntimeClasses().Get(ctx, name, metav1.GetOptions{})
}

// RunSandboxWithHandler runs a sandbox with a CRI runtime handler (a RuntimeClass's handler)
// and returns its ID and IPs. An empty handler is the runtime's default.
func (r *Runtime) RunSandboxWithHandler(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, []string, error) {
	// RunPodSandbox sets up networking; the client gives it twice the usual timeout.
	ctx2, cancel := context.WithTimeout(ctx, 2*r.timeout)
	defer cancel()
	id, err := r.rs.RunPodSandbox(ctx2, cfg, handler)
	if err != nil {
		return "", nil, fmt.Errorf("CRI RunPodSandbox (runtime handler %q): %w", handler, err)
	}
	ctx3, cancel3 := r.ctx(ctx)
	defer cancel3()
	return id, r.sandboxIPs(ctx3, id), nil
}
