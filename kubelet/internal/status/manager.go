package status

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"
)

// Manager sends pod statuses to the API server. Statuses are set from the pod workers and sent
// from one goroutine, a few pods at a time; a status equal to the last one sent is not sent again.
type Manager struct {
	client kubernetes.Interface
	log    *zap.Logger

	mu      sync.Mutex
	pending map[types.UID]*entry
	kick    chan struct{}
}

type entry struct {
	namespace, name string
	apiUID          types.UID    // the API object's UID (a static pod's mirror pod differs)
	base            v1.PodStatus // what the API had when last seen or sent
	want            v1.PodStatus
	sent            []byte // JSON of the last status sent successfully
	dirty           bool
	sending         bool // a patch is in flight: one at a time per pod
}

// parallelPatches is how many pods' status patches may be in flight at once. One at a time, a
// burst of 30 pod starts kept the last pod's Ready condition ~200 ms behind its container; the
// client's QPS limit still bounds the load on the API server.
const parallelPatches = 8

// NewManager returns a status manager; Run sends.
func NewManager(client kubernetes.Interface, log *zap.Logger) *Manager {
	return &Manager{client: client, log: log, pending: map[types.UID]*entry{}, kick: make(chan struct{}, 1)}
}

// Set records the status a pod should have. apiPod is the object in the API (for a static pod,
// its mirror pod); nil when there is none yet, in which case the status waits.
func (m *Manager) Set(uid types.UID, apiPod *v1.Pod, st v1.PodStatus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.pending[uid]
	if e == nil {
		if apiPod == nil {
			return
		}
		e = &entry{base: apiPod.Status}
		m.pending[uid] = e
	}
	if apiPod != nil {
		if e.apiUID != apiPod.UID {
			e.base = apiPod.Status
			e.sent = nil
		}
		e.namespace, e.name, e.apiUID = apiPod.Namespace, apiPod.Name, apiPod.UID
	}
	b, _ := json.Marshal(st)
	if string(b) == string(e.sent) {
		return
	}
	if e.sent == nil {
		// Nothing sent yet: skip when the API already has this status.
		base, _ := json.Marshal(e.base)
		if string(base) == string(b) {
			e.sent = b
			return
		}
	}
	e.want = st
	e.dirty = true
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Get returns the status last set for the pod.
func (m *Manager) Get(uid types.UID) (v1.PodStatus, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.pending[uid]
	if !ok {
		return v1.PodStatus{}, false
	}
	if e.dirty || e.sent != nil {
		return e.want, true
	}
	return e.base, true
}

// Forget drops a pod that is gone.
func (m *Manager) Forget(uid types.UID) {
	m.mu.Lock()
	delete(m.pending, uid)
	m.mu.Unlock()
}

// Run sends changed statuses until ctx ends; failures are retried every few seconds.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		case <-t.C:
		}
		m.flush(ctx)
	}
}

// Flush sends every pending status now (tests and shutdown).
func (m *Manager) Flush(ctx context.Context) { m.flush(ctx) }

func (m *Manager) flush(ctx context.Context) {
	m.mu.Lock()
	var todo []types.UID
	for uid, e := range m.pending {
		if e.dirty && !e.sending {
			todo = append(todo, uid)
		}
	}
	m.mu.Unlock()
	sem := make(chan struct{}, parallelPatches)
	var wg sync.WaitGroup
	for _, uid := range todo {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			m.send(ctx, uid)
		}()
	}
	wg.Wait()
}

// send patches one pod's wanted status.
func (m *Manager) send(ctx context.Context, uid types.UID) {
	m.mu.Lock()
	e := m.pending[uid]
	if e == nil || !e.dirty || e.sending {
		m.mu.Unlock()
		return
	}
	e.sending = true
	ns, name, apiUID, base, want := e.namespace, e.name, e.apiUID, e.base, e.want
	m.mu.Unlock()
	newStatus, err := m.patch(ctx, ns, name, apiUID, base, want)
	m.mu.Lock()
	defer m.mu.Unlock()
	e.sending = false
	if m.pending[uid] != e {
		return // forgotten meanwhile
	}
	switch {
	case err == nil:
		b, _ := json.Marshal(want)
		e.base = newStatus
		e.sent = b
		if string(mustJSON(e.want)) == string(b) {
			e.dirty = false
		} else {
			// Set while this patch was in flight: send the newer one soon.
			select {
			case m.kick <- struct{}{}:
			default:
			}
		}
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		// The pod is gone or was replaced (UID precondition): nothing to report to.
		e.dirty = false
	case ctx.Err() != nil:
		// Shutting down: the next kubelet sends it.
	default:
		m.log.Warn("pod status update failed; will retry", zap.String("pod", ns+"/"+name), zap.Error(err))
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// patch sends a strategic merge patch of the status from base to want, with the pod's UID as a
// precondition so a status never lands on a newer pod of the same name.
func (m *Manager) patch(ctx context.Context, ns, name string, uid types.UID, base, want v1.PodStatus) (v1.PodStatus, error) {
	oldJSON, err := json.Marshal(v1.Pod{Status: base})
	if err != nil {
		return v1.PodStatus{}, err
	}
	newJSON, err := json.Marshal(v1.Pod{Status: want})
	if err != nil {
		return v1.PodStatus{}, err
	}
	p, err := strategicpatch.CreateTwoWayMergePatch(oldJSON, newJSON, v1.Pod{})
	if err != nil {
		return v1.PodStatus{}, fmt.Errorf("status patch for pod %s/%s: %w", ns, name, err)
	}
	var obj map[string]any
	if err := json.Unmarshal(p, &obj); err != nil {
		return v1.PodStatus{}, err
	}
	obj["metadata"] = map[string]any{"uid": string(uid)}
	p, _ = json.Marshal(obj)
	out, err := m.client.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, p, metav1.PatchOptions{}, "status")
	if err != nil {
		return v1.PodStatus{}, fmt.Errorf("patch status of pod %s/%s: %w", ns, name, err)
	}
	return out.Status, nil
}
