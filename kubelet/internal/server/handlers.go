package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/proxy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/kubenode/kubenode/kubelet/internal/podsource"
	"github.com/kubenode/kubenode/kubelet/internal/runtime"
	"github.com/kubenode/kubenode/kubelet/internal/server/logs"
)

// httpError is an error with the status code to answer it with.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func notFound(format string, args ...any) error {
	return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) error {
	return &httpError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	if errors.As(err, &he) {
		http.Error(w, he.msg, he.code)
		return
	}
	s.cfg.Log.Warn("request failed", zap.String("path", r.URL.Path), zap.Error(err))
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) pods(w http.ResponseWriter, _ *http.Request) {
	list := v1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
	for _, p := range s.cfg.Pods.List() {
		list.Items = append(list.Items, *p)
	}
	writeJSON(w, list)
}

func (s *Server) summary(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RuntimeTimeout)
	defer cancel()
	snap, err := s.cfg.Stats.Snapshot(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, statsapi.Summary{Node: snap.Node, Pods: snap.Pods})
}

// configz serves the effective configuration under the component's key, as upstream's
// /configz does (kube-prometheus and support tooling read it).
func (s *Server) configz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{"kubeletconfig": s.cfg.Configz})
}

// findPod finds a managed pod by namespace and name (and UID when the path has one: the pod's
// or, for a static pod, its mirror's).
func (s *Server) findPod(r *http.Request) (*v1.Pod, error) {
	ns, name, uid := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("uid")
	for _, p := range s.cfg.Pods.List() {
		if p.Namespace != ns || p.Name != name {
			continue
		}
		// A static pod's mirror has its own UID, which is the one the API server sends.
		if uid != "" && string(p.UID) != uid && !podsource.IsStatic(p) {
			continue
		}
		return p, nil
	}
	return nil, notFound("pod %s/%s not found on this node", ns, name)
}

// containers returns the pod's CRI containers named name, newest first.
func (s *Server) containers(ctx context.Context, pod *v1.Pod, name string) ([]*runtimeapi.Container, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RuntimeTimeout)
	defer cancel()
	cs, err := s.cfg.Runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: map[string]string{runtime.LabelPodUID: string(pod.UID)}})
	if err != nil {
		return nil, fmt.Errorf("CRI ListContainers: %w", err)
	}
	var out []*runtimeapi.Container
	for _, c := range cs {
		if c.Metadata.GetName() == name {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Metadata.GetAttempt() != out[j].Metadata.GetAttempt() {
			return out[i].Metadata.GetAttempt() > out[j].Metadata.GetAttempt()
		}
		return out[i].CreatedAt > out[j].CreatedAt
	})
	return out, nil
}

func knownContainer(pod *v1.Pod, name string) bool {
	for _, list := range [][]v1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == name {
				return true
			}
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// runningContainer is the ID of the pod's running container named by the path.
func (s *Server) runningContainer(r *http.Request) (*v1.Pod, string, error) {
	pod, err := s.findPod(r)
	if err != nil {
		return nil, "", err
	}
	name := r.PathValue("container")
	if !knownContainer(pod, name) {
		return nil, "", notFound("container %q not found in pod %s/%s", name, pod.Namespace, pod.Name)
	}
	cs, err := s.containers(r.Context(), pod, name)
	if err != nil {
		return nil, "", err
	}
	for _, c := range cs {
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			return pod, c.Id, nil
		}
	}
	return nil, "", badRequest("container %q in pod %s/%s is not running", name, pod.Namespace, pod.Name)
}

// logQuery parses the /containerLogs query (v1.PodLogOptions as the API server encodes it).
func logQuery(q url.Values, now time.Time) (logs.Options, bool, error) {
	var o logs.Options
	boolean := func(name string) (bool, error) {
		v := q.Get(name)
		if v == "" {
			return false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("query parameter %s: %q is not a boolean", name, v)
		}
		return b, nil
	}
	integer := func(name string) (*int64, error) {
		v := q.Get(name)
		if v == "" {
			return nil, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("query parameter %s: %q is not an integer", name, v)
		}
		if n < 0 {
			return nil, fmt.Errorf("query parameter %s: must not be negative", name)
		}
		return &n, nil
	}
	var err error
	var previous bool
	if o.Follow, err = boolean("follow"); err != nil {
		return o, false, err
	}
	if previous, err = boolean("previous"); err != nil {
		return o, false, err
	}
	if o.Timestamps, err = boolean("timestamps"); err != nil {
		return o, false, err
	}
	if o.TailLines, err = integer("tailLines"); err != nil {
		return o, false, err
	}
	if o.LimitBytes, err = integer("limitBytes"); err != nil {
		return o, false, err
	}
	if o.LimitBytes != nil && *o.LimitBytes == 0 {
		return o, false, errors.New("query parameter limitBytes: must be greater than 0")
	}
	since, err := integer("sinceSeconds")
	if err != nil {
		return o, false, err
	}
	if st := q.Get("sinceTime"); st != "" {
		if since != nil {
			return o, false, errors.New("query parameters sinceSeconds and sinceTime: at most one may be set")
		}
		t, err := time.Parse(time.RFC3339, st)
		if err != nil {
			return o, false, fmt.Errorf("query parameter sinceTime: %q is not RFC 3339", st)
		}
		o.Since = t
	}
	if since != nil {
		if *since == 0 {
			return o, false, errors.New("query parameter sinceSeconds: must be greater than 0")
		}
		o.Since = now.Add(-time.Duration(*since) * time.Second)
	}
	return o, previous, nil
}

func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request) {
	opts, previous, err := logQuery(r.URL.Query(), time.Now())
	if err != nil {
		s.fail(w, r, badRequest("%v", err))
		return
	}
	pod, err := s.findPod(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	name := r.PathValue("container")
	if !knownContainer(pod, name) {
		s.fail(w, r, badRequest("container %s is not valid for pod %s", name, pod.Name))
		return
	}
	cs, err := s.containers(r.Context(), pod, name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	idx := 0
	if previous {
		idx = 1
	}
	if len(cs) <= idx {
		what := "container"
		if previous {
			what = "previous terminated container"
		}
		s.fail(w, r, badRequest("%s %q in pod %q not found", what, name, pod.Name))
		return
	}
	id := cs[idx].Id
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RuntimeTimeout)
	st, err := s.cfg.Runtime.ContainerStatus(ctx, id, false)
	cancel()
	if err != nil {
		s.fail(w, r, fmt.Errorf("CRI ContainerStatus %s: %w", id, err))
		return
	}
	path := st.GetStatus().GetLogPath()
	if path == "" {
		s.fail(w, r, notFound("container %q in pod %q has no log", name, pod.Name))
		return
	}
	if _, err := os.Stat(path); err != nil {
		// Removed with its container, or never written.
		s.fail(w, r, notFound("log of container %q in pod %q: %v", name, pod.Name, err))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	rc := http.NewResponseController(w)
	f := logs.Follow{Flush: func() { _ = rc.Flush() }, Running: s.runningCheck(r.Context(), id)}
	if err := logs.Copy(r.Context(), path, opts, w, f); err != nil {
		s.cfg.Log.Debug("container log", zap.String("path", path), zap.Error(err))
	}
}

// runningCheck asks CRI whether a container still runs, at most once a second.
func (s *Server) runningCheck(ctx context.Context, id string) func() bool {
	var mu sync.Mutex
	var last time.Time
	running := true
	return func() bool {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < time.Second {
			return running
		}
		last = time.Now()
		cctx, cancel := context.WithTimeout(ctx, s.cfg.RuntimeTimeout)
		defer cancel()
		st, err := s.cfg.Runtime.ContainerStatus(cctx, id, false)
		if err != nil {
			running = false // gone: nothing more will be written
			return running
		}
		running = st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING
		return running
	}
}

// streamOpts are the exec/attach query flags; the API server sends "1" or "true".
type streamOpts struct {
	stdin, stdout, stderr, tty bool
	command                    []string
}

func streamQuery(q url.Values) (streamOpts, error) {
	b := func(name string) (bool, error) {
		v := q.Get(name)
		if v == "" {
			return false, nil
		}
		x, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("query parameter %s: %q is not a boolean", name, v)
		}
		return x, nil
	}
	var o streamOpts
	var err error
	if o.stdin, err = b("input"); err != nil {
		return o, err
	}
	if !o.stdin {
		if o.stdin, err = b("stdin"); err != nil {
			return o, err
		}
	}
	if o.stdout, err = b("output"); err != nil {
		return o, err
	}
	if !o.stdout {
		if o.stdout, err = b("stdout"); err != nil {
			return o, err
		}
	}
	if o.stderr, err = b("error"); err != nil {
		return o, err
	}
	if !o.stderr {
		if o.stderr, err = b("stderr"); err != nil {
			return o, err
		}
	}
	if o.tty, err = b("tty"); err != nil {
		return o, err
	}
	if !o.stdin && !o.stdout && !o.stderr {
		return o, errors.New("you must specify at least one of stdin, stdout, stderr")
	}
	if o.tty && o.stderr {
		// As upstream: a TTY merges stderr into stdout.
		o.stderr = false
	}
	o.command = q["command"]
	return o, nil
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	o, err := streamQuery(r.URL.Query())
	if err != nil {
		s.fail(w, r, badRequest("%v", err))
		return
	}
	if len(o.command) == 0 {
		s.fail(w, r, badRequest("query parameter command: required"))
		return
	}
	_, id, err := s.runningContainer(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RuntimeTimeout)
	resp, err := s.cfg.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: o.command, Tty: o.tty, Stdin: o.stdin, Stdout: o.stdout, Stderr: o.stderr})
	cancel()
	if err != nil {
		s.fail(w, r, fmt.Errorf("CRI Exec: %w", err))
		return
	}
	s.proxyStream(w, r, resp.Url)
}

func (s *Server) attach(w http.ResponseWriter, r *http.Request) {
	o, err := streamQuery(r.URL.Query())
	if err != nil {
		s.fail(w, r, badRequest("%v", err))
		return
	}
	_, id, err := s.runningContainer(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RuntimeTimeout)
	resp, err := s.cfg.Runtime.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Tty: o.tty, Stdin: o.stdin, Stdout: o.stdout, Stderr: o.stderr})
	cancel()
	if err != nil {
		s.fail(w, r, fmt.Errorf("CRI Attach: %w", err))
		return
	}
	s.proxyStream(w, r, resp.Url)
}

func (s *Server) portForward(w http.ResponseWriter, r *http.Request) {
	pod, err := s.findPod(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RuntimeTimeout)
	defer cancel()
	sbs, err := s.cfg.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
		LabelSelector: map[string]string{runtime.LabelPodUID: string(pod.UID)},
	})
	if err != nil {
		s.fail(w, r, fmt.Errorf("CRI ListPodSandbox: %w", err))
		return
	}
	if len(sbs) == 0 {
		s.fail(w, r, badRequest("pod %s/%s has no running sandbox", pod.Namespace, pod.Name))
		return
	}
	var ports []int32
	for _, p := range r.URL.Query()["port"] {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			s.fail(w, r, badRequest("query parameter port: %q is not a port number", p))
			return
		}
		ports = append(ports, int32(n))
	}
	resp, err := s.cfg.Runtime.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: sbs[0].Id, Port: ports})
	if err != nil {
		s.fail(w, r, fmt.Errorf("CRI PortForward: %w", err))
		return
	}
	s.proxyStream(w, r, resp.Url)
}

// proxyStream forwards the upgraded (SPDY or WebSocket) connection to the runtime's streaming
// server, so clients never talk to it directly (upstream's default since 1.20).
func (s *Server) proxyStream(w http.ResponseWriter, r *http.Request, rawURL string) {
	u, err := url.Parse(rawURL)
	if err != nil {
		s.fail(w, r, fmt.Errorf("runtime streaming URL %q: %w", rawURL, err))
		return
	}
	h := proxy.NewUpgradeAwareHandler(u, nil, false, true, streamResponder{s: s})
	h.ServeHTTP(w, r)
}

type streamResponder struct{ s *Server }

func (sr streamResponder) Error(w http.ResponseWriter, r *http.Request, err error) {
	sr.s.cfg.Log.Warn("stream proxy", zap.String("path", r.URL.Path), zap.Error(err))
	http.Error(w, err.Error(), http.StatusInternalServerError)
}
