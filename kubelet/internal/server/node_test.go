package server

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
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
	"github.com/kubenode/kubenode/kubelet/internal/server/machine"
)

type fakeMachine struct {
	info machine.Info
	err  error
}

func (f fakeMachine) Info() (machine.Info, error) { return f.info, f.err }

const secret = "TOP-SECRET-OUTSIDE-THE-LOG-DIR"

// nodeServer is a server whose log directory holds files, a subdirectory, a symlink inside it
// and symlinks out of it, and whose runtime runs two pods (one with an exited container) beside
// a sandbox that is not ready.
func nodeServer(t *testing.T, debugging bool, execErr error) (*Server, *fakeRuntime) {
	t.Helper()
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	outside := filepath.Join(dir, "outside")
	for _, d := range []string{filepath.Join(logDir, "sub"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, content := range map[string]string{
		filepath.Join(logDir, "syslog"):      "node log line\n",
		filepath.Join(logDir, "sub/app.log"): "app line\n",
		filepath.Join(outside, "secret"):     secret,
	} {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"inside":     "syslog",
		"escape":     filepath.Join(outside, "secret"),
		"escapedir":  outside,
		"escaperel":  "../outside/secret",
		"sub/upward": "../../outside/secret",
	} {
		if err := os.Symlink(target, filepath.Join(logDir, link)); err != nil {
			t.Fatal(err)
		}
	}
	sandbox := func(id, ns, name, uid string, state runtimeapi.PodSandboxState) *runtimeapi.PodSandbox {
		return &runtimeapi.PodSandbox{Id: id, State: state, Metadata: &runtimeapi.PodSandboxMetadata{Namespace: ns, Name: name, Uid: uid},
			Labels: map[string]string{runtime.LabelPodUID: uid}}
	}
	ctr := func(id, sb, uid, name string, image *runtimeapi.ImageSpec, state runtimeapi.ContainerState) *runtimeapi.Container {
		return &runtimeapi.Container{Id: id, PodSandboxId: sb, State: state, Image: image, ImageRef: "sha256:ref-" + id, CreatedAt: 1e9,
			Metadata: &runtimeapi.ContainerMetadata{Name: name}, Labels: map[string]string{runtime.LabelPodUID: uid}}
	}
	rt := &fakeRuntime{
		execErr: execErr,
		sandboxes: []*runtimeapi.PodSandbox{
			sandbox("sb-web", "ns", "web", "uid-1", runtimeapi.PodSandboxState_SANDBOX_READY),
			sandbox("sb-old", "ns", "old", "uid-2", runtimeapi.PodSandboxState_SANDBOX_NOTREADY),
			sandbox("sb-dns", "kube-system", "dns", "uid-3", runtimeapi.PodSandboxState_SANDBOX_READY),
		},
		containers: []*runtimeapi.Container{
			// As containerd: listed by image ID, named only in the status.
			ctr("c-app", "sb-web", "uid-1", "app", &runtimeapi.ImageSpec{Image: "sha256:abc"}, runtimeapi.ContainerState_CONTAINER_RUNNING),
			ctr("c-side", "sb-web", "uid-1", "side", &runtimeapi.ImageSpec{Image: "sha256:def", UserSpecifiedImage: "registry.example/side:v1"}, runtimeapi.ContainerState_CONTAINER_RUNNING),
			ctr("c-done", "sb-web", "uid-1", "init", &runtimeapi.ImageSpec{Image: "sha256:fed"}, runtimeapi.ContainerState_CONTAINER_EXITED),
			ctr("c-oldapp", "sb-old", "uid-2", "app", &runtimeapi.ImageSpec{Image: "sha256:abc"}, runtimeapi.ContainerState_CONTAINER_EXITED),
		},
		images: map[string]string{"c-app": "docker.io/library/busybox:1.36"},
	}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: types.UID("uid-1")},
		Spec: v1.PodSpec{InitContainers: []v1.Container{{Name: "init"}}, Containers: []v1.Container{{Name: "app"}, {Name: "side"}}}}
	cert, err := LoadOrCreateSelfSigned(filepath.Join(dir, "pki"), "node-a", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Addr: "127.0.0.1:0", NodeName: "node-a", TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		Authn: userAuthn{},
		Authz: subresourceAuthz{"alice": {"proxy"}, "logreader": {"log"}, "specreader": {"spec"}},
		Pods:  fakePods{pod}, Runtime: rt, Debugging: debugging, LogDir: logDir,
		Machine:     fakeMachine{info: machine.Info{NumCores: 2, MemoryCapacity: 4 << 30, MachineID: "m-1", BootID: "b-1"}},
		RuntimeName: "containerd", Log: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, rt
}

func serve(s *Server, method, path, user string) (int, string, http.Header) {
	req := httptest.NewRequest(method, path, nil)
	if user != "" {
		req.Header.Set("X-Test-User", user)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b), rec.Header()
}

func TestNodeHandlers(t *testing.T) {
	tests := []struct {
		name      string
		debugging bool
		execErr   error
		user      string
		method    string
		path      string
		wantCode  int
		wantBody  string
	}{
		// /logs/: nodes/log, the directory and nothing outside it.
		{"logs: directory listing", true, nil, "logreader", "GET", "/logs/", 200, `<a href="sub/">sub/</a>`},
		{"logs: a file", true, nil, "logreader", "GET", "/logs/syslog", 200, "node log line\n"},
		{"logs: a file in a subdirectory", true, nil, "logreader", "GET", "/logs/sub/app.log", 200, "app line\n"},
		{"logs: subdirectory listing", true, nil, "logreader", "GET", "/logs/sub/", 200, `<a href="app.log">app.log</a>`},
		{"logs: a subdirectory without its slash is redirected", true, nil, "logreader", "GET", "/logs/sub", 301, ""},
		{"logs: HEAD", true, nil, "logreader", "HEAD", "/logs/syslog", 200, ""},
		{"logs: a symlink inside the directory", true, nil, "logreader", "GET", "/logs/inside", 200, "node log line\n"},
		{"logs: absolute symlink out", true, nil, "logreader", "GET", "/logs/escape", 404, ""},
		{"logs: relative symlink out", true, nil, "logreader", "GET", "/logs/escaperel", 404, ""},
		{"logs: symlink out from a subdirectory", true, nil, "logreader", "GET", "/logs/sub/upward", 404, ""},
		{"logs: through a symlinked directory out", true, nil, "logreader", "GET", "/logs/escapedir/secret", 404, ""},
		// The mux cleans the path and redirects out of /logs/; nothing is served.
		{"logs: dot-dot", true, nil, "logreader", "GET", "/logs/../outside/secret", 307, `href="/outside/secret"`},
		{"logs: encoded dot-dot", true, nil, "logreader", "GET", "/logs/sub/%2e%2e/%2e%2e/outside/secret", 404, ""},
		{"logs: missing file", true, nil, "logreader", "GET", "/logs/nope.log", 404, ""},
		{"logs: nodes/proxy is not nodes/log", true, nil, "alice", "GET", "/logs/", 403, "subresource(s)=[log]"},
		{"logs: unauthenticated", true, nil, "", "GET", "/logs/", 401, ""},
		{"logs: read only", true, nil, "logreader", "POST", "/logs/syslog", 405, ""},
		{"logs: off without debugging handlers", false, nil, "logreader", "GET", "/logs/syslog", 404, ""},
		// /spec: nodes/spec.
		{"spec", true, nil, "specreader", "GET", "/spec/", 200, `"num_cores":2`},
		{"spec without the slash", true, nil, "specreader", "GET", "/spec", 200, `"machine_id":"m-1"`},
		{"spec: nodes/proxy is not nodes/spec", true, nil, "alice", "GET", "/spec/", 403, "subresource(s)=[spec]"},
		{"spec: off without debugging handlers", false, nil, "specreader", "GET", "/spec/", 404, ""},
		// /runningpods: nodes/proxy.
		{"runningpods", true, nil, "alice", "GET", "/runningpods/", 200, `"name":"web"`},
		{"runningpods without the slash", true, nil, "alice", "GET", "/runningpods", 200, `"name":"dns"`},
		{"runningpods: nodes/log is not nodes/proxy", true, nil, "logreader", "GET", "/runningpods/", 403, "subresource(s)=[proxy]"},
		{"runningpods: off without debugging handlers", false, nil, "alice", "GET", "/runningpods/", 404, ""},
		// /run: nodes/proxy, POST.
		{"run", true, nil, "alice", "POST", "/run/ns/web/app?cmd=echo+hi", 200, "out of c-app: echo|hi\nerr\n"},
		{"run with the pod's UID", true, nil, "alice", "POST", "/run/ns/web/uid-1/side?cmd=ls", 200, "out of c-side: ls\n"},
		{"run: another pod's UID", true, nil, "alice", "POST", "/run/ns/web/uid-9/side?cmd=ls", 404, "ns/web"},
		{"run needs cmd", true, nil, "alice", "POST", "/run/ns/web/app", 400, "cmd"},
		{"run: unknown pod", true, nil, "alice", "POST", "/run/ns/db/app?cmd=ls", 404, "ns/db"},
		{"run: unknown container", true, nil, "alice", "POST", "/run/ns/web/nope?cmd=ls", 404, `"nope"`},
		{"run: container not running", true, nil, "alice", "POST", "/run/ns/web/init?cmd=ls", 400, "not running"},
		{"run: the command fails", true, errors.New("command terminated with exit code 3"), "alice", "POST", "/run/ns/web/app?cmd=false", 500, "exit code 3"},
		{"run: GET is not allowed", true, nil, "alice", "GET", "/run/ns/web/app?cmd=ls", 405, ""},
		{"run: nodes/spec is not nodes/proxy", true, nil, "specreader", "POST", "/run/ns/web/app?cmd=ls", 403, "verb=create"},
		{"run: off without debugging handlers", false, nil, "alice", "POST", "/run/ns/web/app?cmd=ls", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, rt := nodeServer(t, tc.debugging, tc.execErr)
			code, body, _ := serve(s, tc.method, tc.path, tc.user)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("got %d %.300q, want %d containing %q", code, body, tc.wantCode, tc.wantBody)
			}
			if strings.Contains(body, secret) {
				t.Errorf("served a file outside the log directory: %q", body)
			}
			if code != http.StatusOK && strings.HasPrefix(tc.path, "/run/") && tc.execErr == nil && len(rt.execs) > 0 {
				t.Errorf("refused /run still ran %v", rt.execs)
			}
		})
	}
}

// TestRunningPodsIsTheRuntimesView checks the list is built from what runs (ready sandboxes,
// running containers), with images by name and container IDs, not from the pods the kubelet
// was given.
func TestRunningPodsIsTheRuntimesView(t *testing.T) {
	s, _ := nodeServer(t, true, nil)
	code, body, hdr := serve(s, "GET", "/runningpods/", "alice")
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %s %q", code, hdr.Get("Content-Type"), body)
	}
	var list v1.PodList
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "PodList" || list.APIVersion != "v1" {
		t.Errorf("kind %q apiVersion %q", list.Kind, list.APIVersion)
	}
	type ctr struct{ name, image, id string }
	type pod struct {
		ns, name, uid string
		ctrs          []ctr
	}
	var got []pod
	for _, p := range list.Items {
		gp := pod{ns: p.Namespace, name: p.Name, uid: string(p.UID)}
		if len(p.Spec.Containers) != len(p.Status.ContainerStatuses) {
			t.Fatalf("pod %s: %d containers, %d statuses", p.Name, len(p.Spec.Containers), len(p.Status.ContainerStatuses))
		}
		for i, c := range p.Spec.Containers {
			st := p.Status.ContainerStatuses[i]
			if st.Name != c.Name || st.Image != c.Image || st.State.Running == nil {
				t.Errorf("pod %s container %s: status %+v does not match", p.Name, c.Name, st)
			}
			gp.ctrs = append(gp.ctrs, ctr{c.Name, c.Image, st.ContainerID})
		}
		got = append(got, gp)
	}
	want := []pod{
		{"kube-system", "dns", "uid-3", nil},
		{"ns", "web", "uid-1", []ctr{
			{"app", "docker.io/library/busybox:1.36", "containerd://c-app"},
			{"side", "registry.example/side:v1", "containerd://c-side"},
		}},
	}
	if len(got) != len(want) {
		t.Fatalf("got pods %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].ns != want[i].ns || got[i].name != want[i].name || got[i].uid != want[i].uid || len(got[i].ctrs) != len(want[i].ctrs) {
			t.Fatalf("pod %d: got %+v, want %+v", i, got[i], want[i])
		}
		for j := range want[i].ctrs {
			if got[i].ctrs[j] != want[i].ctrs[j] {
				t.Errorf("pod %s container %d: got %+v, want %+v", want[i].name, j, got[i].ctrs[j], want[i].ctrs[j])
			}
		}
	}
}

func TestSpecServesCAdvisorFieldNames(t *testing.T) {
	s, _ := nodeServer(t, true, nil)
	code, body, _ := serve(s, "GET", "/spec/", "specreader")
	if code != 200 {
		t.Fatalf("got %d %q", code, body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"num_cores": 2.0, "memory_capacity": float64(4 << 30), "machine_id": "m-1", "boot_id": "b-1"} {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (in %s)", k, m[k], v, body)
		}
	}
	for _, k := range []string{"cpu_frequency_khz", "system_uuid", "swap_capacity", "timestamp"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %s in %s", k, body)
		}
	}
}

func TestSpecReadError(t *testing.T) {
	dir := t.TempDir()
	cert, err := LoadOrCreateSelfSigned(filepath.Join(dir, "pki"), "node-a", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Addr: "127.0.0.1:0", NodeName: "node-a", TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		Authn: userAuthn{}, Authz: alwaysAllow{}, Pods: fakePods{}, Runtime: &fakeRuntime{}, Debugging: true,
		Machine: fakeMachine{err: errors.New("machine info: open /proc/meminfo: no such file")}, Log: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _ := serve(s, "GET", "/spec/", "anyone"); code != 500 || !strings.Contains(body, "/proc/meminfo") {
		t.Errorf("got %d %q, want 500 naming the file", code, body)
	}
	// No LogDir: no /logs/.
	if code, _, _ := serve(s, "GET", "/logs/", "anyone"); code != 404 {
		t.Errorf("/logs/ without a log directory: %d, want 404", code)
	}
}
