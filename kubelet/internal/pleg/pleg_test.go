package pleg

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubenode/kubenode/kubelet/internal/plan"
	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

type fakeLister struct {
	pods map[types.UID]*runtime.PodState
	err  error
}

func (f *fakeLister) Relist(context.Context) (map[types.UID]*runtime.PodState, error) {
	if f.err != nil {
		return nil, f.err
	}
	out := map[types.UID]*runtime.PodState{}
	for k, v := range f.pods {
		c := *v
		out[k] = &c
	}
	return out, nil
}

func pod(uid string, st plan.ContainerState) *runtime.PodState {
	return &runtime.PodState{UID: types.UID(uid), Observed: plan.Observed{Containers: []plan.Container{{ID: uid + "-c", Name: "c", State: st}}}}
}

func TestRelistEvents(t *testing.T) {
	l := &fakeLister{pods: map[types.UID]*runtime.PodState{"a": pod("a", plan.StateRunning), "b": pod("b", plan.StateRunning)}}
	var got []string
	now := time.Unix(1000, 0)
	p := New(l, nil, time.Second, 3*time.Minute, func(uid types.UID) { got = append(got, string(uid)) }, func() time.Time { return now }, zap.NewNop())
	steps := []struct {
		name   string
		change func()
		want   []string
	}{
		{name: "first listing reports every pod", change: func() {}, want: []string{"a", "b"}},
		{name: "no change, no events", change: func() {}, want: nil},
		{name: "a container exits", change: func() { l.pods["a"] = pod("a", plan.StateExited) }, want: []string{"a"}},
		{name: "a pod disappears, one appears", change: func() { delete(l.pods, "b"); l.pods["c"] = pod("c", plan.StateCreated) }, want: []string{"b", "c"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got = nil
			st.change()
			p.Relist(context.Background())
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(st.want, ",") {
				t.Fatalf("events %v, want %v", got, st.want)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	l := &fakeLister{pods: map[types.UID]*runtime.PodState{}}
	now := time.Unix(1000, 0)
	p := New(l, nil, time.Second, time.Minute, func(types.UID) {}, func() time.Time { return now }, zap.NewNop())
	p.Relist(context.Background())
	if err := p.Healthy(); err != nil {
		t.Fatalf("healthy after relist: %v", err)
	}
	l.err = errors.New("runtime hung")
	now = now.Add(30 * time.Second)
	p.Relist(context.Background())
	if err := p.Healthy(); err != nil {
		t.Fatalf("unhealthy within threshold: %v", err)
	}
	now = now.Add(45 * time.Second)
	p.Relist(context.Background())
	if err := p.Healthy(); err == nil || !strings.Contains(err.Error(), "runtime hung") {
		t.Fatalf("stalled relist: err = %v, want unhealthy naming the cause", err)
	}
	l.err = nil
	p.Relist(context.Background())
	if err := p.Healthy(); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}
