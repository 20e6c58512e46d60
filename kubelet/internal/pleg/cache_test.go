package pleg

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubenode/kubenode/kubelet/internal/plan"
	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

func TestCache(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	running := pod("a", plan.StateRunning)
	exited := pod("a", plan.StateExited)
	type get struct {
		notBefore int
		want      *runtime.PodState
		ok        bool
	}
	tests := []struct {
		name  string
		fill  func(c *Cache)
		get   get
		extra []get
	}{
		{
			name: "empty cache answers nothing, so the first sync lists",
			fill: func(*Cache) {},
			get:  get{notBefore: 0, ok: false},
		},
		{
			name: "a relist answers for pods it saw",
			fill: func(c *Cache) { c.SetAll(map[types.UID]*runtime.PodState{"a": running}, at(10)) },
			get:  get{notBefore: 0, want: running, ok: true},
		},
		{
			name: "a relist answers 'nothing' for a pod it did not see",
			fill: func(c *Cache) { c.SetAll(map[types.UID]*runtime.PodState{}, at(10)) },
			get:  get{notBefore: 5, want: nil, ok: true},
		},
		{
			name: "a relist older than the pod's last action does not answer",
			fill: func(c *Cache) { c.SetAll(map[types.UID]*runtime.PodState{"a": running}, at(10)) },
			get:  get{notBefore: 11, ok: false},
			extra: []get{
				{notBefore: 10, want: running, ok: true},
			},
		},
		{
			name: "a worker's listing after its action answers",
			fill: func(c *Cache) {
				c.SetAll(map[types.UID]*runtime.PodState{}, at(10))
				c.Set("a", running, at(20))
			},
			get: get{notBefore: 15, want: running, ok: true},
		},
		{
			name: "a relist that began before the worker's listing does not overwrite it",
			fill: func(c *Cache) {
				c.Set("a", running, at(20))
				c.SetAll(map[types.UID]*runtime.PodState{}, at(15)) // began earlier, finished later
			},
			get: get{notBefore: 20, want: running, ok: true},
		},
		{
			name: "a newer relist replaces a worker's listing",
			fill: func(c *Cache) {
				c.Set("a", running, at(20))
				c.SetAll(map[types.UID]*runtime.PodState{"a": exited}, at(30))
			},
			get: get{notBefore: 20, want: exited, ok: true},
		},
		{
			name: "a newer relist that no longer sees the pod says it has nothing",
			fill: func(c *Cache) {
				c.Set("a", running, at(20))
				c.SetAll(map[types.UID]*runtime.PodState{}, at(30))
			},
			get: get{notBefore: 20, want: nil, ok: true},
		},
		{
			name: "an older Set is dropped",
			fill: func(c *Cache) {
				c.Set("a", exited, at(30))
				c.Set("a", running, at(20))
			},
			get: get{notBefore: 0, want: exited, ok: true},
		},
		{
			name: "a removed pod stays removed against a relist that began before the removal",
			fill: func(c *Cache) {
				c.SetAll(map[types.UID]*runtime.PodState{"a": running}, at(10))
				c.Set("a", nil, at(40))
				c.SetAll(map[types.UID]*runtime.PodState{"a": running}, at(35))
			},
			get: get{notBefore: 0, want: nil, ok: true},
		},
		{
			name: "an older relist finishing late is ignored",
			fill: func(c *Cache) {
				c.SetAll(map[types.UID]*runtime.PodState{}, at(50))
				c.SetAll(map[types.UID]*runtime.PodState{"a": running}, at(40))
			},
			get: get{notBefore: 0, want: nil, ok: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCache()
			tc.fill(c)
			for _, g := range append([]get{tc.get}, tc.extra...) {
				st, ok := c.Get("a", at(g.notBefore))
				if ok != g.ok || st != g.want {
					t.Errorf("Get(notBefore=+%dms) = %v, %v; want %v, %v", g.notBefore, st, ok, g.want, g.ok)
				}
			}
		})
	}
}

func TestRelistFillsCacheBeforeEvents(t *testing.T) {
	l := &fakeLister{pods: map[types.UID]*runtime.PodState{"a": pod("a", plan.StateRunning)}}
	now := time.Unix(1000, 0)
	c := NewCache()
	var seen []*runtime.PodState
	p := New(l, c, time.Second, time.Minute, func(uid types.UID) {
		st, ok := c.Get(uid, now)
		if !ok {
			t.Errorf("event for %s before the cache held the relist", uid)
		}
		seen = append(seen, st)
	}, func() time.Time { return now }, zap.NewNop())
	p.Relist(context.Background())
	if len(seen) != 1 || seen[0] == nil || seen[0].Observed.Containers[0].State != plan.StateRunning {
		t.Fatalf("the event's sync would read %v, want the running pod", seen)
	}
	l.err = context.DeadlineExceeded
	now = now.Add(time.Second)
	p.Relist(context.Background())
	if _, ok := c.Get("a", now); ok {
		t.Fatal("a failed relist must not make the cache look current")
	}
}
