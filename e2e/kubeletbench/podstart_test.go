package kubeletbench

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

func pod(uid string, ready bool, restarts int32) *v1.Pod {
	st := v1.ConditionFalse
	if ready {
		st = v1.ConditionTrue
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p-" + uid, UID: types.UID(uid)},
		Status: v1.PodStatus{
			Conditions:        []v1.PodCondition{{Type: v1.PodReady, Status: st}},
			ContainerStatuses: []v1.ContainerStatus{{Name: "pause", RestartCount: restarts}},
		},
	}
}

func TestReadyWatch(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	w := newReadyWatch(func() time.Time { return now })

	w.observe(pod("a", false, 0))
	now = t0.Add(100 * time.Millisecond)
	w.observe(pod("a", true, 0)) // first Ready: this is the time that counts
	now = t0.Add(900 * time.Millisecond)
	w.observe(pod("a", true, 0)) // a later status patch must not move it
	w.observe(pod("b", false, 2))
	w.observe("not a pod")

	at, missing := w.ready([]types.UID{"a", "b"})
	if got := at["a"]; !got.Equal(t0.Add(100 * time.Millisecond)) {
		t.Errorf("a Ready at %v, want the first observation at +100ms", got)
	}
	if len(missing) != 1 || missing[0] != "b" {
		t.Errorf("missing = %v, want [b]", missing)
	}
	if pods, restarts := w.count(); pods != 2 || restarts != 2 {
		t.Errorf("count = %d pods, %d restarts; want 2, 2", pods, restarts)
	}

	// Deletions, including the informer's tombstones, leave the count.
	w.forget(pod("a", true, 0))
	w.forget(cache.DeletedFinalStateUnknown{Key: "ns/p-b", Obj: pod("b", false, 2)})
	if pods, _ := w.count(); pods != 0 {
		t.Errorf("count after deletes = %d, want 0", pods)
	}
	// A pod seen Ready once stays counted as having become Ready.
	if _, missing := w.ready([]types.UID{"a"}); len(missing) != 0 {
		t.Errorf("a forgotten as Ready after its deletion")
	}
}

func TestLatencies(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pods := []created{{name: "a", uid: "a", boundAt: t0}, {name: "b", uid: "b", boundAt: t0.Add(time.Second)}, {name: "c", uid: "c", boundAt: t0}}
	at := map[types.UID]time.Time{"a": t0.Add(300 * time.Millisecond), "b": t0.Add(1500 * time.Millisecond)}
	got := latencies(pods, at)
	want := msList(300, 500)
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("latencies = %v, want %v (each from its own bound time; pods without a time left out)", got, want)
	}
}

func TestBetween(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pods := []created{{uid: "a"}, {uid: "b"}, {uid: "c"}}
	from := map[types.UID]time.Time{"a": t0, "b": t0.Add(time.Second)}
	to := map[types.UID]time.Time{"a": t0.Add(200 * time.Millisecond), "b": t0.Add(1100 * time.Millisecond), "c": t0}
	got := between(pods, from, to)
	if len(got) != 2 || got[0] != 200*time.Millisecond || got[1] != 100*time.Millisecond {
		t.Fatalf("between = %v, want [200ms 100ms] (c lacks a from-event)", got)
	}
}

func TestSpread(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pods := []created{{boundAt: t0.Add(40 * time.Millisecond)}, {boundAt: t0}, {boundAt: t0.Add(250 * time.Millisecond)}}
	if got := spread(pods); got != 250*time.Millisecond {
		t.Fatalf("spread = %v, want 250ms (first to last, in any order)", got)
	}
	if got := spread(nil); got != 0 {
		t.Fatalf("spread of nothing = %v", got)
	}
}
