package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubenode/kubenode/kubelet/internal/runtime"
)

type fakePods []*v1.Pod

func (f fakePods) List() []*v1.Pod { return f }

// fakeRuntime holds containers and their log paths.
type fakeRuntime struct {
	containers []*runtimeapi.Container
	logPaths   map[string]string
	// cgroups are the containers' cgroup paths, returned in verbose status info.
	cgroups map[string]string
	// verboseCalls counts verbose ContainerStatus calls.
	verboseCalls int
	sandboxes    []*runtimeapi.PodSandbox
	// images are the images by name that containers' statuses report.
	images map[string]string
	// execs records ExecSync commands; execErr fails them.
	execs   [][]string
	execErr error
}

var _ Runtime = (*fakeRuntime)(nil)

func (f *fakeRuntime) ListContainers(_ context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	var out []*runtimeapi.Container
	for _, c := range f.containers {
		if uid := filter.GetLabelSelector()[runtime.LabelPodUID]; uid != "" && c.Labels[runtime.LabelPodUID] != uid {
			continue
		}
		if st := filter.GetState(); st != nil && c.State != st.State {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

func (f *fakeRuntime) ListPodSandbox(_ context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	var out []*runtimeapi.PodSandbox
	for _, sb := range f.sandboxes {
		if uid := filter.GetLabelSelector()[runtime.LabelPodUID]; uid != "" && sb.Labels[runtime.LabelPodUID] != uid {
			continue
		}
		if st := filter.GetState(); st != nil && sb.State != st.State {
			continue
		}
		out = append(out, sb)
	}
	return out, nil
}

func (f *fakeRuntime) ExecSync(_ context.Context, id string, cmd []string, _ time.Duration) ([]byte, []byte, error) {
	f.execs = append(f.execs, cmd)
	if f.execErr != nil {
		return nil, nil, f.execErr
	}
	return []byte("out of " + id + ": " + strings.Join(cmd, "|") + "\n"), []byte("err\n"), nil
}

func (f *fakeRuntime) ContainerStatus(_ context.Context, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error) {
	if p, ok := f.cgroups[id]; ok && verbose {
		f.verboseCalls++
		info := fmt.Sprintf(`{"pid":42,"runtimeSpec":{"linux":{"cgroupsPath":%q}}}`, p)
		// As containerd: the status names the image by its tag, the list only by ID.
		st := &runtimeapi.ContainerStatus{Id: id, Image: &runtimeapi.ImageSpec{Image: "registry.example/" + id + ":tag"}}
		return &runtimeapi.ContainerStatusResponse{Status: st, Info: map[string]string{"info": info}}, nil
	}
	for _, c := range f.containers {
		if c.Id == id {
			st := &runtimeapi.ContainerStatus{Id: id, State: c.State, LogPath: f.logPaths[id]}
			if img, ok := f.images[id]; ok {
				st.Image = &runtimeapi.ImageSpec{Image: img}
			}
			return &runtimeapi.ContainerStatusResponse{Status: st}, nil
		}
	}
	return nil, errors.New("not found")
}

func (f *fakeRuntime) Exec(context.Context, *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	return nil, errors.New("no exec in the fake")
}

func (f *fakeRuntime) Attach(context.Context, *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	return nil, errors.New("no attach in the fake")
}

func (f *fakeRuntime) PortForward(context.Context, *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	return nil, errors.New("no port-forward in the fake")
}

func (f *fakeRuntime) ReopenContainerLog(context.Context, string) error { return nil }

func (f *fakeRuntime) ListContainerStats(context.Context, *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	return nil, nil
}

// userAuthn authenticates the X-Test-User header, standing in for certificates and tokens.
type userAuthn struct{}

func (userAuthn) Authenticate(r *http.Request) (User, bool, error) {
	u := r.Header.Get("X-Test-User")
	return User{Name: u}, u != "", nil
}

// subresourceAuthz allows users the subresources listed for them.
type subresourceAuthz map[string][]string

func (z subresourceAuthz) Authorize(_ context.Context, u User, a Attributes) (bool, string, error) {
	for _, s := range z[u.Name] {
		if s == a.Subresource {
			return true, "", nil
		}
	}
	return false, "", nil
}

func testServer(t *testing.T, debugging bool) (*Server, *fakeRuntime) {
	t.Helper()
	dir := t.TempDir()
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: types.UID("uid-1")}, Spec: v1.PodSpec{Containers: []v1.Container{{Name: "app"}}}}
	rt := &fakeRuntime{logPaths: map[string]string{}}
	for attempt, text := range []string{"first run", "second run"} {
		id := fmt.Sprintf("c%d", attempt)
		path := filepath.Join(dir, fmt.Sprintf("%d.log", attempt))
		line := fmt.Sprintf("2026-01-01T00:00:0%dZ stdout F %s\n", attempt, text)
		if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		state := runtimeapi.ContainerState_CONTAINER_EXITED
		if attempt == 1 {
			state = runtimeapi.ContainerState_CONTAINER_RUNNING
		}
		rt.containers = append(rt.containers, &runtimeapi.Container{
			Id: id, State: state, CreatedAt: int64(attempt),
			Metadata: &runtimeapi.ContainerMetadata{Name: "app", Attempt: uint32(attempt)},
			Labels:   map[string]string{runtime.LabelPodUID: "uid-1"},
		})
		rt.logPaths[id] = path
	}
	cert, err := LoadOrCreateSelfSigned(filepath.Join(dir, "pki"), "node-a", []string{"10.0.0.5"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Addr: "127.0.0.1:0", NodeName: "node-a", TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		Authn: userAuthn{}, Authz: subresourceAuthz{"alice": {"proxy"}, "stats-only": {"stats"}},
		Pods: fakePods{pod}, Runtime: rt, Debugging: debugging, Log: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, rt
}

func TestHandlers(t *testing.T) {
	tests := []struct {
		name      string
		debugging bool
		user      string
		method    string
		path      string
		wantCode  int
		wantBody  string
	}{
		{"unauthenticated", true, "", "GET", "/pods", 401, "Unauthorized"},
		{"authenticated but not allowed", true, "stats-only", "GET", "/pods", 403, "user=stats-only"},
		{"pods", true, "alice", "GET", "/pods", 200, `"uid":"uid-1"`},
		{"current log", true, "alice", "GET", "/containerLogs/ns/web/app", 200, "second run\n"},
		{"previous log", true, "alice", "GET", "/containerLogs/ns/web/app?previous=true", 200, "first run\n"},
		{"timestamps", true, "alice", "GET", "/containerLogs/ns/web/app?timestamps=true", 200, "2026-01-01T00:00:01Z second run\n"},
		{"log file gone", true, "alice", "GET", "/containerLogs/ns/web/app?previous=true&removeLog=1", 404, "log of container"},
		{"unknown container", true, "alice", "GET", "/containerLogs/ns/web/nope", 400, "nope"},
		{"unknown pod", true, "alice", "GET", "/containerLogs/ns/db/app", 404, "ns/db"},
		{"bad query", true, "alice", "GET", "/containerLogs/ns/web/app?tailLines=x", 400, "tailLines"},
		{"exec needs a command", true, "alice", "POST", "/exec/ns/web/app?stdout=1", 400, "command"},
		{"exec needs a stream", true, "alice", "POST", "/exec/ns/web/app?command=ls", 400, "stdin, stdout, stderr"},
		{"logs off without debugging handlers", false, "alice", "GET", "/containerLogs/ns/web/app", 404, ""},
		{"exec off without debugging handlers", false, "alice", "POST", "/exec/ns/web/app?command=ls&stdout=1", 404, ""},
		{"pods stay on without debugging handlers", false, "alice", "GET", "/pods", 200, "uid-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, rt := testServer(t, tc.debugging)
			if strings.Contains(tc.path, "removeLog") {
				if err := os.Remove(rt.logPaths["c0"]); err != nil {
					t.Fatal(err)
				}
			}
			req := httptest.NewRequest(tc.method, tc.path, nil)
			if tc.user != "" {
				req.Header.Set("X-Test-User", tc.user)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tc.wantCode || !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("got %d %q, want %d containing %q", rec.Code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

func TestLogQuery(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		query   string
		check   func(t *testing.T, follow, prev bool, tail, limit *int64, since time.Time, ts bool)
		wantErr string
	}{
		{query: "follow=true&previous=1&timestamps=true&tailLines=10&limitBytes=5", check: func(t *testing.T, follow, prev bool, tail, limit *int64, _ time.Time, ts bool) {
			if !follow || !prev || !ts || *tail != 10 || *limit != 5 {
				t.Errorf("follow=%v prev=%v ts=%v tail=%v limit=%v", follow, prev, ts, *tail, *limit)
			}
		}},
		{query: "sinceSeconds=60", check: func(t *testing.T, _, _ bool, _, _ *int64, since time.Time, _ bool) {
			if !since.Equal(now.Add(-time.Minute)) {
				t.Errorf("since = %v", since)
			}
		}},
		{query: "sinceTime=2026-01-01T11:00:00Z", check: func(t *testing.T, _, _ bool, _, _ *int64, since time.Time, _ bool) {
			if !since.Equal(now.Add(-time.Hour)) {
				t.Errorf("since = %v", since)
			}
		}},
		{query: "follow=yes", wantErr: "follow"},
		{query: "tailLines=-1", wantErr: "tailLines"},
		{query: "limitBytes=0", wantErr: "limitBytes"},
		{query: "sinceSeconds=0", wantErr: "sinceSeconds"},
		{query: "sinceSeconds=5&sinceTime=2026-01-01T11:00:00Z", wantErr: "at most one"},
		{query: "sinceTime=noon", wantErr: "sinceTime"},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			o, prev, err := logQuery(q, now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o.Follow, prev, o.TailLines, o.LimitBytes, o.Since, o.Timestamps)
		})
	}
}

func TestSelfSignedCertificate(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	c1, err := LoadOrCreateSelfSigned(dir, "node-a", []string{"10.0.0.5"}, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(c1.Certificate[0])
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	for _, name := range []string{"node-a", "10.0.0.5", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("certificate does not verify for %s: %v", name, err)
		}
	}
	t.Run("kept across restarts", func(t *testing.T) {
		c2, err := LoadOrCreateSelfSigned(dir, "node-a", []string{"10.0.0.5"}, now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if string(c2.Certificate[0]) != string(c1.Certificate[0]) {
			t.Error("a valid certificate was replaced")
		}
	})
	t.Run("replaced when a node IP is added", func(t *testing.T) {
		c3, err := LoadOrCreateSelfSigned(dir, "node-a", []string{"10.0.0.5", "10.0.0.6"}, now)
		if err != nil {
			t.Fatal(err)
		}
		leaf3, _ := x509.ParseCertificate(c3.Certificate[0])
		if err := leaf3.VerifyHostname("10.0.0.6"); err != nil {
			t.Error(err)
		}
	})
	t.Run("replaced when close to expiry", func(t *testing.T) {
		c4, err := LoadOrCreateSelfSigned(dir, "node-a", []string{"10.0.0.5", "10.0.0.6"}, now.Add(360*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		leaf4, _ := x509.ParseCertificate(c4.Certificate[0])
		if !leaf4.NotAfter.After(now.Add(700 * 24 * time.Hour)) {
			t.Errorf("not renewed: NotAfter %v", leaf4.NotAfter)
		}
	})
	if st, err := os.Stat(filepath.Join(dir, "kubelet.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", st, err)
	}
}
