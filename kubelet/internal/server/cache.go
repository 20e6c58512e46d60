package server

import (
	"sync"
	"time"
)

// ttlCache keeps answers for a time. Expired entries are dropped lazily and by a sweep once the
// map has grown, so a stream of distinct keys cannot grow it without bound.
type ttlCache[V any] struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]ttlEntry[V]
	max int
}

type ttlEntry[V any] struct {
	v       V
	expires time.Time
}

func newTTLCache[V any](now func() time.Time, max int) *ttlCache[V] {
	return &ttlCache[V]{now: now, m: map[string]ttlEntry[V]{}, max: max}
}

func (c *ttlCache[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		var zero V
		return zero, false
	}
	if !c.now().Before(e.expires) {
		delete(c.m, key)
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *ttlCache[V]) set(key string, v V, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.m) >= c.max {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.max {
			// Still full of live entries: forget them all rather than grow; the cost is only
			// extra API calls.
			c.m = map[string]ttlEntry[V]{}
		}
	}
	c.m[key] = ttlEntry[V]{v: v, expires: now.Add(ttl)}
}
