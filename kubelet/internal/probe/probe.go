// Package probe runs the liveness, readiness and startup probes of running containers (exec
// through CRI, httpGet, tcpSocket, grpc), one goroutine per container and probe, and keeps the
// results the pod sync and the status read.
package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Kind is the probe kind.
type Kind string

// Probe kinds.
const (
	Liveness  Kind = "liveness"
	Readiness Kind = "readiness"
	Startup   Kind = "startup"
)

// Execer runs a command in a container (CRI ExecSync).
type Execer interface {
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) ([]byte, []byte, error)
}

// Target is one running container to probe.
type Target struct {
	PodUID      types.UID
	ContainerID string
	Container   *v1.Container
	PodIP       string
}

type key struct {
	id   string
	kind Kind
}

type state struct {
	pod    types.UID
	ok     bool // current result (false until the first success)
	dead   bool // liveness or startup failed: restart the container
	cancel context.CancelFunc
}

// Manager owns the probe workers.
type Manager struct {
	exec     Execer
	onChange func(types.UID)
	log      *zap.Logger

	mu      sync.Mutex
	workers map[key]*state
}

// NewManager returns a manager; onChange is called with the pod UID whenever a result flips.
func NewManager(exec Execer, onChange func(types.UID), log *zap.Logger) *Manager {
	return &Manager{exec: exec, onChange: onChange, log: log, workers: map[key]*state{}}
}

// Sync makes the workers match the pod's running containers: new containers with probes get
// workers, containers no longer listed lose theirs.
func (m *Manager) Sync(ctx context.Context, uid types.UID, targets []Target) {
	want := map[key]Target{}
	for _, t := range targets {
		c := t.Container
		if c.StartupProbe != nil {
			want[key{t.ContainerID, Startup}] = t
		}
		if c.LivenessProbe != nil {
			want[key{t.ContainerID, Liveness}] = t
		}
		if c.ReadinessProbe != nil {
			want[key{t.ContainerID, Readiness}] = t
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, st := range m.workers {
		if _, ok := want[k]; !ok && st.pod == uid {
			st.cancel()
			delete(m.workers, k)
		}
	}
	for k, t := range want {
		if _, ok := m.workers[k]; ok {
			continue
		}
		// Workers outlive the sync that started them: detach from its context.
		wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		m.workers[k] = &state{pod: uid, cancel: cancel}
		go m.run(wctx, k, t)
	}
}

// RemovePod stops every worker of a pod.
func (m *Manager) RemovePod(uid types.UID) { m.Sync(context.Background(), uid, nil) }

// Ready reports the readiness result of a container; ok is false when it has no readiness probe.
func (m *Manager) Ready(containerID string) (ready, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.workers[key{containerID, Readiness}]
	if !ok {
		return false, false
	}
	return st.ok, true
}

// Started reports whether a container's startup probe has succeeded (true without one).
func (m *Manager) Started(containerID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.workers[key{containerID, Startup}]
	return !ok || st.ok
}

// LivenessFailed reports whether the container failed its liveness probe, or its startup probe
// for good, and must be restarted.
func (m *Manager) LivenessFailed(containerID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range []Kind{Liveness, Startup} {
		if st, ok := m.workers[key{containerID, k}]; ok && st.dead {
			return true
		}
	}
	return false
}

func spec(c *v1.Container, k Kind) *v1.Probe {
	switch k {
	case Liveness:
		return c.LivenessProbe
	case Readiness:
		return c.ReadinessProbe
	}
	return c.StartupProbe
}

func (m *Manager) run(ctx context.Context, wk key, t Target) {
	k := wk.kind
	p := spec(t.Container, k)
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	successThreshold := int(max(p.SuccessThreshold, 1))
	failureThreshold := int(max(p.FailureThreshold, 1))
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(p.InitialDelaySeconds) * time.Second):
	}
	successes, failures := 0, 0
	for {
		// Liveness and readiness wait for the startup probe.
		if k != Startup && !m.Started(t.ContainerID) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(period):
			}
			continue
		}
		err := m.probe(ctx, t, p, timeout)
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		st := m.workers[wk]
		if st == nil {
			m.mu.Unlock()
			return
		}
		changed := false
		if err == nil {
			successes++
			failures = 0
			if !st.ok && successes >= successThreshold {
				st.ok, changed = true, true
			}
		} else {
			failures++
			successes = 0
			if failures >= failureThreshold {
				if st.ok {
					st.ok, changed = false, true
				}
				if (k == Liveness || k == Startup) && !st.dead {
					st.dead, changed = true, true
				}
			}
		}
		m.mu.Unlock()
		if err != nil {
			m.log.Debug("probe failed", zap.String("kind", string(k)), zap.String("container", t.Container.Name), zap.Error(err))
		}
		if changed {
			m.onChange(t.PodUID)
		}
		if k == Startup && err == nil && changed {
			return // a startup probe stops once it succeeded
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}

func (m *Manager) probe(ctx context.Context, t Target, p *v1.Probe, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.Exec != nil:
		_, stderr, err := m.exec.ExecSync(ctx, t.ContainerID, p.Exec.Command, timeout)
		if err != nil {
			return fmt.Errorf("exec %v: %w (%s)", p.Exec.Command, err, strings.TrimSpace(string(stderr)))
		}
		return nil
	case p.HTTPGet != nil:
		return httpProbe(ctx, t, p.HTTPGet)
	case p.TCPSocket != nil:
		port, err := Port(p.TCPSocket.Port, t.Container)
		if err != nil {
			return err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = t.PodIP
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return c.Close()
	case p.GRPC != nil:
		conn, err := grpc.NewClient(net.JoinHostPort(t.PodIP, strconv.Itoa(int(p.GRPC.Port))), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		svc := ""
		if p.GRPC.Service != nil {
			svc = *p.GRPC.Service
		}
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			return err
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("grpc health: %s", resp.Status)
		}
		return nil
	}
	return fmt.Errorf("probe has no handler")
}

func httpProbe(ctx context.Context, t Target, g *v1.HTTPGetAction) error {
	port, err := Port(g.Port, t.Container)
	if err != nil {
		return err
	}
	host := g.Host
	if host == "" {
		host = t.PodIP
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, strconv.Itoa(port))+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/kubenode")
	for _, h := range g.HTTPHeaders {
		req.Header.Set(h.Name, h.Value)
	}
	// Probes never follow redirects off the pod nor verify certificates, like upstream.
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}, //nolint:gosec // probes skip verification as upstream does
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}

// Port resolves a numeric or named container port.
func Port(p intstr.IntOrString, c *v1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("port %q is not among the container's ports", p.StrVal)
}
