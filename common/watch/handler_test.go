package watch

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func pod(name, version string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: version}, Spec: corev1.PodSpec{NodeName: "node-1"}}
}

// recorder writes the events a Handler[*corev1.Pod] got as strings.
type recorder struct{ events []string }

func (r *recorder) handler() Handler[*corev1.Pod] {
	return Handler[*corev1.Pod]{
		OnAdd: func(p *corev1.Pod) { r.events = append(r.events, "add "+p.Name+"@"+p.ResourceVersion) },
		OnUpdate: func(o, n *corev1.Pod) {
			r.events = append(r.events, "update "+o.Name+"@"+o.ResourceVersion+"->"+n.ResourceVersion)
		},
		OnDelete: func(p *corev1.Pod) { r.events = append(r.events, "delete "+p.Name+"@"+p.ResourceVersion) },
	}
}

func TestHandler(t *testing.T) {
	tests := []struct {
		name string
		send func(h cache.ResourceEventHandler)
		want []string
	}{
		{name: "add", send: func(h cache.ResourceEventHandler) { h.OnAdd(pod("a", "1"), true) }, want: []string{"add a@1"}},
		{name: "update", send: func(h cache.ResourceEventHandler) { h.OnUpdate(pod("a", "1"), pod("a", "2")) }, want: []string{"update a@1->2"}},
		{name: "delete", send: func(h cache.ResourceEventHandler) { h.OnDelete(pod("a", "3")) }, want: []string{"delete a@3"}},
		{
			name: "tombstone is unwrapped to the last known state",
			send: func(h cache.ResourceEventHandler) {
				h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/a", Obj: pod("a", "7")})
			},
			want: []string{"delete a@7"},
		},
		{
			name: "tombstone of another type is dropped",
			send: func(h cache.ResourceEventHandler) {
				h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/a", Obj: &corev1.Service{}})
			},
		},
		{name: "empty tombstone is dropped", send: func(h cache.ResourceEventHandler) { h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/a"}) }},
		{name: "add of another type is dropped", send: func(h cache.ResourceEventHandler) { h.OnAdd(&corev1.Node{}, false) }},
		{name: "update with another type is dropped", send: func(h cache.ResourceEventHandler) { h.OnUpdate(pod("a", "1"), &corev1.Node{}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r recorder
			tt.send(r.handler().ResourceEventHandler())
			if !slices.Equal(r.events, tt.want) {
				t.Fatalf("events = %q, want %q", r.events, tt.want)
			}
		})
	}
}

func TestHandlerWithoutFuncsIgnoresEvents(t *testing.T) {
	h := Handler[*corev1.Pod]{}.ResourceEventHandler()
	h.OnAdd(pod("a", "1"), false)
	h.OnUpdate(pod("a", "1"), pod("a", "2"))
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/a", Obj: pod("a", "2")})
}

func TestUnwrap(t *testing.T) {
	if p, ok := Unwrap[*corev1.Pod](cache.DeletedFinalStateUnknown{Obj: pod("a", "1")}); !ok || p.Name != "a" {
		t.Errorf("Unwrap(tombstone) = %v, %v", p, ok)
	}
	if p, ok := Unwrap[*corev1.Pod](pod("b", "1")); !ok || p.Name != "b" {
		t.Errorf("Unwrap(pod) = %v, %v", p, ok)
	}
	if _, ok := Unwrap[*corev1.Pod](&corev1.Node{}); ok {
		t.Error("Unwrap(node) as pod succeeded")
	}
}

// Through a real informer: events arrive typed, in order.
func TestAddHandlerOnInformer(t *testing.T) {
	client := fake.NewClientset(pod("a", "1"))
	inf := NewPodInformer(client, "node-1", 0)
	got := make(chan string, 10)
	reg, err := AddHandler(inf, Handler[*corev1.Pod]{
		OnAdd:    func(p *corev1.Pod) { got <- "add " + p.Name },
		OnUpdate: func(_, n *corev1.Pod) { got <- "update " + n.Name + " " + n.Labels["v"] },
		OnDelete: func(p *corev1.Pod) { got <- "delete " + p.Name },
	})
	if err != nil {
		t.Fatal(err)
	}
	runInformers(t, inf)
	// The handler has seen the initial list once its registration synced.
	if err := WaitForSync(context.Background(), 10*time.Second, SyncedFunc("pod handler", reg.HasSynced)); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if e != "add a" {
			t.Fatalf("first event = %q, want add a", e)
		}
	default:
		t.Fatal("handler registration synced before the handler saw the initial pod")
	}

	ctx := context.Background()
	pods := client.CoreV1().Pods("ns")
	b := pod("b", "")
	if _, err := pods.Create(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b.Labels = map[string]string{"v": "2"}
	if _, err := pods.Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	want := []string{"add b", "update b 2", "delete a"}
	for i, w := range want {
		select {
		case e := <-got:
			if e != w {
				t.Fatalf("event %d = %q, want %q", i, e, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d (%q) did not arrive", i, w)
		}
	}
}
