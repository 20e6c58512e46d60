package kubeletbench

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// readyWatch records, per pod, when a watch first showed its Ready condition true, and keeps
// the latest copy of every pod in the namespace.
type readyWatch struct {
	mu      sync.Mutex
	readyAt map[types.UID]time.Time
	pods    map[types.UID]*v1.Pod
	now     func() time.Time
}

func newReadyWatch(now func() time.Time) *readyWatch {
	return &readyWatch{readyAt: map[types.UID]time.Time{}, pods: map[types.UID]*v1.Pod{}, now: now}
}

// observe is the informer's add/update handler.
func (w *readyWatch) observe(obj any) {
	p, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	t := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pods[p.UID] = p
	if _, seen := w.readyAt[p.UID]; !seen && podReady(p) {
		w.readyAt[p.UID] = t
	}
}

func (w *readyWatch) forget(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if p, ok := obj.(*v1.Pod); ok {
		w.mu.Lock()
		delete(w.pods, p.UID)
		w.mu.Unlock()
	}
}

// ready returns when each of uids was first seen Ready, and the uids not Ready yet.
func (w *readyWatch) ready(uids []types.UID) (map[types.UID]time.Time, []types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at := map[types.UID]time.Time{}
	var missing []types.UID
	for _, u := range uids {
		if t, ok := w.readyAt[u]; ok {
			at[u] = t
		} else {
			missing = append(missing, u)
		}
	}
	return at, missing
}

// count returns how many pods the namespace holds and how many container restarts they report.
func (w *readyWatch) count() (pods, restarts int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.pods {
		for _, cs := range p.Status.ContainerStatuses {
			restarts += int(cs.RestartCount)
		}
	}
	return len(w.pods), restarts
}

// describe summarises the pods among uids (phase and container states) for error messages.
func (w *readyWatch) describe(uids []types.UID) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for i, u := range uids {
		if i == 5 {
			out = append(out, fmt.Sprintf("... and %d more", len(uids)-5))
			break
		}
		p, ok := w.pods[u]
		if !ok {
			out = append(out, string(u)+": not seen")
			continue
		}
		var states []string
		for _, cs := range p.Status.ContainerStatuses {
			switch {
			case cs.State.Waiting != nil:
				states = append(states, cs.Name+"=waiting:"+cs.State.Waiting.Reason)
			case cs.State.Running != nil:
				states = append(states, cs.Name+"=running")
			case cs.State.Terminated != nil:
				states = append(states, cs.Name+"=terminated:"+cs.State.Terminated.Reason)
			}
		}
		out = append(out, fmt.Sprintf("%s: phase %q %s", p.Name, p.Status.Phase, strings.Join(states, " ")))
	}
	return strings.Join(out, "; ")
}

func podReady(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// watchPods starts an informer on ns that feeds a readyWatch; it stops with ctx.
func watchPods(ctx context.Context, client kubernetes.Interface, ns string) (*readyWatch, error) {
	w := newReadyWatch(time.Now)
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.observe,
		UpdateFunc: func(_, obj any) { w.observe(obj) },
		DeleteFunc: w.forget,
	}); err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("watch pods in %s: %v cache did not sync", ns, typ)
		}
	}
	return w, nil
}

// benchPod is a one-container pod from the pause image, already bound to the node.
func benchPod(ns, name, nodeName, image string) *v1.Pod {
	grace := int64(5)
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "kubelet-bench"}},
		Spec: v1.PodSpec{
			NodeName:                      nodeName,
			RestartPolicy:                 v1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []v1.Container{{Name: "pause", Image: image, ImagePullPolicy: v1.PullIfNotPresent}},
		},
	}
}

// created is one pod the benchmark created and when its Create call returned: the pod is
// created bound, so that is when it was bound (the earliest the kubelet can see it).
type created struct {
	name    string
	uid     types.UID
	boundAt time.Time
}

// createPods creates pods concurrently, at most parallel at a time (parallel <= 0: all at once),
// with every request released together.
func createPods(ctx context.Context, client kubernetes.Interface, pods []*v1.Pod, parallel int) ([]created, error) {
	if parallel <= 0 {
		parallel = len(pods)
	}
	out := make([]created, len(pods))
	errs := make([]error, len(pods))
	sem := make(chan struct{}, parallel)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			sem <- struct{}{}
			defer func() { <-sem }()
			got, err := client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
			if err != nil {
				errs[i] = fmt.Errorf("create pod %s/%s: %w", p.Namespace, p.Name, err)
				return
			}
			out[i] = created{name: got.Name, uid: got.UID, boundAt: time.Now()}
		}()
	}
	close(start)
	wg.Wait()
	return out, errors.Join(errs...)
}

// waitReady waits until every pod was seen Ready, or fails naming the ones that were not.
func waitReady(ctx context.Context, w *readyWatch, pods []created, timeout time.Duration, alive func() error) (map[types.UID]time.Time, error) {
	uids := make([]types.UID, len(pods))
	for i, p := range pods {
		uids[i] = p.uid
	}
	deadline := time.Now().Add(timeout)
	for {
		at, missing := w.ready(uids)
		if len(missing) == 0 {
			return at, nil
		}
		if err := alive(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d pods not Ready within %s: %s", len(missing), len(uids), timeout, w.describe(missing))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runningAt returns, per pod, when its last container was created and when it started, from
// the CRI containers the kubelet labelled with the pod's UID. Every pod must have wantContainers
// running.
func runningAt(ctx context.Context, rs internalapi.RuntimeService, pods []created, wantContainers int) (createdAt, startedAt map[types.UID]time.Time, err error) {
	ctrs, err := rs.ListContainers(ctx, &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}})
	if err != nil {
		return nil, nil, fmt.Errorf("CRI ListContainers: %w", err)
	}
	byPod := map[string][]string{}
	for _, c := range ctrs {
		uid := c.GetLabels()["io.kubernetes.pod.uid"]
		byPod[uid] = append(byPod[uid], c.GetId())
	}
	createdAt, startedAt = map[types.UID]time.Time{}, map[types.UID]time.Time{}
	var bad []string
	for _, p := range pods {
		ids := byPod[string(p.uid)]
		if len(ids) != wantContainers {
			bad = append(bad, fmt.Sprintf("%s has %d running containers, want %d", p.name, len(ids), wantContainers))
			continue
		}
		var lastCreated, lastStarted time.Time
		for _, id := range ids {
			st, err := rs.ContainerStatus(ctx, id, false)
			if err != nil {
				return nil, nil, fmt.Errorf("CRI ContainerStatus %s of pod %s: %w", id, p.name, err)
			}
			if t := time.Unix(0, st.GetStatus().GetCreatedAt()); t.After(lastCreated) {
				lastCreated = t
			}
			if t := time.Unix(0, st.GetStatus().GetStartedAt()); t.After(lastStarted) {
				lastStarted = t
			}
		}
		createdAt[p.uid], startedAt[p.uid] = lastCreated, lastStarted
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, nil, fmt.Errorf("pods Ready in the API but not running in the runtime: %s", strings.Join(bad, "; "))
	}
	return createdAt, startedAt, nil
}

// latencies turns per-pod event times into durations since each pod was bound.
func latencies(pods []created, at map[types.UID]time.Time) []time.Duration {
	out := make([]time.Duration, 0, len(pods))
	for _, p := range pods {
		if t, ok := at[p.uid]; ok {
			out = append(out, t.Sub(p.boundAt))
		}
	}
	return out
}

// between returns, per pod that has both, the time from its from-event to its to-event.
func between(pods []created, from, to map[types.UID]time.Time) []time.Duration {
	out := make([]time.Duration, 0, len(pods))
	for _, p := range pods {
		f, ok1 := from[p.uid]
		t, ok2 := to[p.uid]
		if ok1 && ok2 {
			out = append(out, t.Sub(f))
		}
	}
	return out
}

// spread is the time between the first and the last pod's bound time.
func spread(pods []created) time.Duration {
	if len(pods) == 0 {
		return 0
	}
	lo, hi := pods[0].boundAt, pods[0].boundAt
	for _, p := range pods[1:] {
		if p.boundAt.Before(lo) {
			lo = p.boundAt
		}
		if p.boundAt.After(hi) {
			hi = p.boundAt
		}
	}
	return hi.Sub(lo)
}
