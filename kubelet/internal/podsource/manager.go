// Package podsource gathers the pods this node should run: pods the API server binds to the node
// (a watch with spec.nodeName=NODE) and static pods from a manifest directory, for which it keeps
// mirror pods in the API so the cluster can see them.
package podsource

import (
	"sort"
	"sync"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
)

// Annotations upstream uses for static and mirror pods.
const (
	AnnotationMirror = "kubernetes.io/config.mirror"
	AnnotationHash   = "kubernetes.io/config.hash"
	AnnotationSource = "kubernetes.io/config.source"
	AnnotationSeen   = "kubernetes.io/config.seen"
)

// Manager holds the desired pods. It is safe for concurrent use.
type Manager struct {
	mu       sync.Mutex
	api      map[types.UID]*v1.Pod
	static   map[types.UID]*v1.Pod
	mirrors  map[types.UID]*v1.Pod // keyed by the static pod's UID (the mirror annotation)
	onChange func(types.UID)
}

// NewManager returns an empty manager; onChange is called with the UID of every pod that was
// added, changed or removed.
func NewManager(onChange func(types.UID)) *Manager {
	return &Manager{api: map[types.UID]*v1.Pod{}, static: map[types.UID]*v1.Pod{}, mirrors: map[types.UID]*v1.Pod{}, onChange: onChange}
}

// IsMirror reports whether an API pod is a mirror pod.
func IsMirror(p *v1.Pod) bool {
	_, ok := p.Annotations[AnnotationMirror]
	return ok
}

// IsStatic reports whether a pod came from a manifest file.
func IsStatic(p *v1.Pod) bool {
	return p.Annotations[AnnotationSource] == "file"
}

// SetAPIPod records an added or updated pod from the API. An update that changes only the
// status (most often our own patch coming back) is stored without triggering a sync.
func (m *Manager) SetAPIPod(p *v1.Pod) {
	var uid types.UID
	var old *v1.Pod
	m.mu.Lock()
	if IsMirror(p) {
		uid = types.UID(p.Annotations[AnnotationMirror])
		old = m.mirrors[uid]
		m.mirrors[uid] = p
	} else {
		uid = p.UID
		old = m.api[uid]
		m.api[uid] = p
	}
	m.mu.Unlock()
	if old != nil && old.UID == p.UID && !differ(old, p) {
		return
	}
	m.onChange(uid)
}

// differ reports whether two versions of a pod differ in what a sync acts on.
func differ(a, b *v1.Pod) bool {
	return !apiequality.Semantic.DeepEqual(a.Spec, b.Spec) ||
		!apiequality.Semantic.DeepEqual(a.Labels, b.Labels) ||
		!apiequality.Semantic.DeepEqual(a.Annotations, b.Annotations) ||
		!apiequality.Semantic.DeepEqual(a.DeletionTimestamp, b.DeletionTimestamp) ||
		!apiequality.Semantic.DeepEqual(a.DeletionGracePeriodSeconds, b.DeletionGracePeriodSeconds) ||
		// A phase set by someone else (eviction, a terminal phase) changes what runs.
		a.Status.Phase != b.Status.Phase
}

// DeleteAPIPod records a pod gone from the API.
func (m *Manager) DeleteAPIPod(p *v1.Pod) {
	var uid types.UID
	m.mu.Lock()
	if IsMirror(p) {
		uid = types.UID(p.Annotations[AnnotationMirror])
		if cur, ok := m.mirrors[uid]; ok && cur.UID == p.UID {
			delete(m.mirrors, uid)
		}
	} else {
		uid = p.UID
		delete(m.api, uid)
	}
	m.mu.Unlock()
	m.onChange(uid)
}

// SetStatic replaces the set of static pods.
func (m *Manager) SetStatic(pods []*v1.Pod) {
	next := map[types.UID]*v1.Pod{}
	for _, p := range pods {
		next[p.UID] = p
	}
	var changed []types.UID
	m.mu.Lock()
	for uid := range m.static {
		if _, ok := next[uid]; !ok {
			changed = append(changed, uid)
		}
	}
	for uid := range next {
		if _, ok := m.static[uid]; !ok {
			changed = append(changed, uid)
		}
	}
	m.static = next
	m.mu.Unlock()
	for _, uid := range changed {
		m.onChange(uid)
	}
}

// Get returns a desired pod and its API object (a static pod's mirror, when it has one).
func (m *Manager) Get(uid types.UID) (*v1.Pod, *v1.Pod, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.api[uid]; ok {
		return p, p, true
	}
	if p, ok := m.static[uid]; ok {
		mirror := m.mirrors[uid]
		if mirror != nil && mirror.DeletionTimestamp == nil {
			return p, mirror, true
		}
		return p, nil, true
	}
	return nil, nil, false
}

// List returns the desired pods, sorted by creation time then name (admission order).
func (m *Manager) List() []*v1.Pod {
	m.mu.Lock()
	out := make([]*v1.Pod, 0, len(m.api)+len(m.static))
	for _, p := range m.api {
		out = append(out, p)
	}
	for _, p := range m.static {
		out = append(out, p)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreationTimestamp.Equal(&out[j].CreationTimestamp) {
			return out[i].CreationTimestamp.Before(&out[j].CreationTimestamp)
		}
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	return out
}

// Static returns the static pods and the mirror pods seen in the API (by static UID).
func (m *Manager) Static() (map[types.UID]*v1.Pod, map[types.UID]*v1.Pod) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := make(map[types.UID]*v1.Pod, len(m.static))
	for k, v := range m.static {
		s[k] = v
	}
	mi := make(map[types.UID]*v1.Pod, len(m.mirrors))
	for k, v := range m.mirrors {
		mi[k] = v
	}
	return s, mi
}
