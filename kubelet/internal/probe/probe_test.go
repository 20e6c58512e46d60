package probe

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type fakeExec struct{ fail atomic.Bool }

func (f *fakeExec) ExecSync(context.Context, string, []string, time.Duration) ([]byte, []byte, error) {
	if f.fail.Load() {
		return nil, []byte("unhealthy"), errors.New("exit status 1")
	}
	return nil, nil, nil
}

type triggers struct {
	mu sync.Mutex
	n  int
}

func (t *triggers) add(types.UID) { t.mu.Lock(); t.n++; t.mu.Unlock() }

func (t *triggers) count() int { t.mu.Lock(); defer t.mu.Unlock(); return t.n }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(6 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLivenessAndStartup(t *testing.T) {
	ex := &fakeExec{}
	tr := &triggers{}
	m := NewManager(ex, tr.add, zap.NewNop())
	c := &v1.Container{
		Name:          "c",
		StartupProbe:  &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"true"}}}, PeriodSeconds: 1},
		LivenessProbe: &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"check"}}}, PeriodSeconds: 1, FailureThreshold: 2},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.Sync(ctx, "pod", []Target{{PodUID: "pod", ContainerID: "c1", Container: c}})
	if m.Started("c1") {
		t.Fatal("started before the startup probe ran")
	}
	waitFor(t, "startup probe success", func() bool { return m.Started("c1") })
	if m.LivenessFailed("c1") {
		t.Fatal("liveness failed while the command succeeds")
	}
	ex.fail.Store(true)
	waitFor(t, "liveness failure after 2 failed probes", func() bool { return m.LivenessFailed("c1") })
	if tr.count() == 0 {
		t.Error("no sync triggered on result changes")
	}
	// The container is replaced: the old worker goes, its result with it.
	m.Sync(ctx, "pod", nil)
	if m.LivenessFailed("c1") || !m.Started("c1") {
		t.Error("results of a removed container remain")
	}
}

func TestReadinessHTTPAndTCP(t *testing.T) {
	var healthy atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" || !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	_, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	c := &v1.Container{
		Name:           "web",
		Ports:          []v1.ContainerPort{{Name: "http", ContainerPort: int32(port)}},
		ReadinessProbe: &v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}, PeriodSeconds: 1},
		LivenessProbe:  &v1.Probe{ProbeHandler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}}, PeriodSeconds: 1},
	}
	m := NewManager(&fakeExec{}, func(types.UID) {}, zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.Sync(ctx, "pod", []Target{{PodUID: "pod", ContainerID: "w1", Container: c, PodIP: "127.0.0.1"}})
	if ready, probed := m.Ready("w1"); !probed || ready {
		t.Fatalf("ready=%v probed=%v before any success, want not ready", ready, probed)
	}
	time.Sleep(1500 * time.Millisecond)
	if ready, _ := m.Ready("w1"); ready {
		t.Fatal("ready while the endpoint returns 503")
	}
	healthy.Store(true)
	waitFor(t, "ready", func() bool { r, _ := m.Ready("w1"); return r })
	healthy.Store(false)
	waitFor(t, "not ready again", func() bool { r, _ := m.Ready("w1"); return !r })
	if m.LivenessFailed("w1") {
		t.Fatal("TCP liveness failed against a listening port")
	}
	if _, probed := m.Ready("other"); probed {
		t.Fatal("a container without a readiness probe reports as probed")
	}
	m.RemovePod("pod")
	if _, probed := m.Ready("w1"); probed {
		t.Fatal("workers left after RemovePod")
	}
}

func TestPort(t *testing.T) {
	c := &v1.Container{Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080}}}
	for _, tc := range []struct {
		in   intstr.IntOrString
		want int
		err  bool
	}{
		{intstr.FromInt32(80), 80, false},
		{intstr.FromString("http"), 8080, false},
		{intstr.FromString("9090"), 9090, false},
		{intstr.FromString("grpc"), 0, true},
	} {
		t.Run(tc.in.String(), func(t *testing.T) {
			got, err := Port(tc.in, c)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("Port(%v) = %d, %v", tc.in, got, err)
			}
		})
	}
}
