package pleg

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

// Cache holds every pod's last observed runtime state with the time its observation began,
// like upstream's kubelet pod cache. The relist fills it for all pods; a pod worker adds the
// listing it makes right after its own actions. A sync reads from it instead of listing the
// runtime again, as long as the entry is not older than the worker's last action, so a burst of
// pod starts does not add two CRI list calls per sync to the runtime's load.
type Cache struct {
	mu   sync.Mutex
	pods map[types.UID]cacheEntry
	// all is when the last full relist began: a pod without an entry had no runtime state then.
	all time.Time
}

type cacheEntry struct {
	state *runtime.PodState // nil: the pod had nothing in the runtime
	at    time.Time
}

// NewCache returns an empty cache; it answers nothing until a relist or a Set fills it.
func NewCache() *Cache {
	return &Cache{pods: map[types.UID]cacheEntry{}}
}

// Get returns the pod's state (nil when it has none in the runtime) if it was observed at or
// after notBefore. ok is false when the cache has no observation that recent.
func (c *Cache) Get(uid types.UID, notBefore time.Time) (st *runtime.PodState, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, found := c.pods[uid]; found {
		if e.at.Before(notBefore) {
			return nil, false
		}
		return e.state, true
	}
	if c.all.IsZero() || c.all.Before(notBefore) {
		return nil, false
	}
	return nil, true
}

// Set records one pod's state (nil: nothing in the runtime), observed from at on. An
// observation older than the one held is dropped.
func (c *Cache) Set(uid types.UID, st *runtime.PodState, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.pods[uid]
	if ok && e.at.After(at) {
		return
	}
	if !ok && st == nil && !c.all.IsZero() && !c.all.Before(at) {
		return // a relist that began no earlier already says so
	}
	c.pods[uid] = cacheEntry{state: st, at: at}
}

// SetAll records a full listing that began at at. Entries observed later (a worker's listing
// after its own actions, made while the relist ran) are kept.
func (c *Cache) SetAll(pods map[types.UID]*runtime.PodState, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if at.Before(c.all) {
		return
	}
	for uid, e := range c.pods {
		if e.at.After(at) {
			continue
		}
		if st, ok := pods[uid]; ok {
			c.pods[uid] = cacheEntry{state: st, at: at}
		} else {
			delete(c.pods, uid) // gone: covered by all
		}
	}
	for uid, st := range pods {
		if _, ok := c.pods[uid]; !ok {
			c.pods[uid] = cacheEntry{state: st, at: at}
		}
	}
	c.all = at
}
