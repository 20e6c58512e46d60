package volume

import (
	"context"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
)

// ObjectTTL is how long a ConfigMap or Secret read for a volume is reused before the next sync
// reads it again: changes reach running pods within about this long, as with upstream's TTL
// cache, while a burst of pods sharing kube-root-ca.crt costs one GET instead of one per sync.
const ObjectTTL = time.Minute

// objectCache serves ConfigMaps and Secrets from memory for up to ttl. Concurrent misses for
// the same object share one request. Only successful reads are kept, so a pod waiting for an
// object that does not exist yet sees it on its next sync.
type objectCache struct {
	api API
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*cacheEntry // key: kind/namespace/name
}

type cacheEntry struct {
	done    chan struct{} // closed when the read finished
	obj     any
	err     error
	fetched time.Time
}

func newObjectCache(api API, ttl time.Duration, now func() time.Time) *objectCache {
	return &objectCache{api: api, ttl: ttl, now: now, entries: map[string]*cacheEntry{}}
}

func (c *objectCache) ConfigMap(ctx context.Context, ns, name string) (*v1.ConfigMap, error) {
	obj, err := c.get(ctx, "configmap/"+ns+"/"+name, func(ctx context.Context) (any, error) {
		return c.api.ConfigMap(ctx, ns, name)
	})
	if err != nil {
		return nil, err
	}
	return obj.(*v1.ConfigMap), nil
}

func (c *objectCache) Secret(ctx context.Context, ns, name string) (*v1.Secret, error) {
	obj, err := c.get(ctx, "secret/"+ns+"/"+name, func(ctx context.Context) (any, error) {
		return c.api.Secret(ctx, ns, name)
	})
	if err != nil {
		return nil, err
	}
	return obj.(*v1.Secret), nil
}

func (c *objectCache) get(ctx context.Context, key string, read func(context.Context) (any, error)) (any, error) {
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok {
		select {
		case <-e.done:
			if e.err == nil && c.now().Sub(e.fetched) < c.ttl {
				c.mu.Unlock()
				return e.obj, nil
			}
			ok = false // stale or failed: read again
		default: // a read is in flight: wait for it below
		}
	}
	if !ok {
		c.pruneLocked()
		e = &cacheEntry{done: make(chan struct{})}
		c.entries[key] = e
		c.mu.Unlock()
		obj, err := read(ctx)
		c.mu.Lock()
		e.obj, e.err, e.fetched = obj, err, c.now()
		if err != nil {
			delete(c.entries, key)
		}
		close(e.done)
		c.mu.Unlock()
		return obj, err
	}
	c.mu.Unlock()
	select {
	case <-e.done:
		return e.obj, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pruneLocked drops expired entries so objects no pod uses any more do not stay in memory.
func (c *objectCache) pruneLocked() {
	now := c.now()
	for k, e := range c.entries {
		select {
		case <-e.done:
			if now.Sub(e.fetched) >= c.ttl {
				delete(c.entries, k)
			}
		default:
		}
	}
}
