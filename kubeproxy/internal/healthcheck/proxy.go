// Package healthcheck serves kube-proxy's health: /healthz on :10256 (fails
// when queued changes stay unsynced) and the health-check node ports of
// externalTrafficPolicy=Local services, with upstream's JSON bodies so load
// balancers and probes written for upstream keep working.
package healthcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// ProxyHealth tracks whether syncs keep up with queued changes.
type ProxyHealth struct {
	timeout time.Duration
	now     func() time.Time

	mu            sync.Mutex
	lastUpdated   time.Time
	oldestPending time.Time
	nodeHealthy   bool
}

// NewProxyHealth reports unhealthy when a queued change is not synced within
// timeout (upstream uses 2x syncPeriod). now is the clock (time.Now in
// production).
func NewProxyHealth(timeout time.Duration, now func() time.Time) *ProxyHealth {
	if now == nil {
		now = time.Now
	}
	return &ProxyHealth{timeout: timeout, now: now, nodeHealthy: true}
}

// QueuedUpdate records that a change waits for a sync.
func (h *ProxyHealth) QueuedUpdate() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.oldestPending.IsZero() {
		h.oldestPending = h.now()
	}
}

// Updated records a successful sync: nothing is pending any more.
func (h *ProxyHealth) Updated() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastUpdated = h.now()
	h.oldestPending = time.Time{}
}

// SetNodeHealthy records whether this node should receive traffic (false
// while the Node is being deleted).
func (h *ProxyHealth) SetNodeHealthy(ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nodeHealthy = ok
}

// Status is the /healthz body, as upstream.
type Status struct {
	LastUpdated time.Time `json:"lastUpdated"`
	CurrentTime time.Time `json:"currentTime"`
	NodeHealthy bool      `json:"nodeHealthy"`
	healthy     bool
}

// Status returns the current health.
func (h *ProxyHealth) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	overdue := !h.oldestPending.IsZero() && now.Sub(h.oldestPending) > h.timeout
	return Status{LastUpdated: h.lastUpdated, CurrentTime: now, NodeHealthy: h.nodeHealthy, healthy: !overdue}
}

// Healthy reports whether syncs keep up.
func (h *ProxyHealth) Healthy() bool { return h.Status().healthy }

// ServeHTTP answers /healthz and /livez: 200 with the JSON status when
// healthy, 503 otherwise. /healthz also fails while the node is unhealthy.
func (h *ProxyHealth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := h.Status()
	code := http.StatusOK
	if !st.healthy || (r.URL.Path == "/healthz" && !st.NodeHealthy) {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, st)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// Server serves ProxyHealth on an address (healthzBindAddress, :10256).
type Server struct {
	addr   string
	log    *zap.Logger
	health *ProxyHealth
}

// NewServer returns a server for addr. It starts nothing.
func NewServer(addr string, log *zap.Logger, health *ProxyHealth) *Server {
	return &Server{addr: addr, log: log, health: health}
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("healthz: listening on %s: %w", s.addr, err)
	}
	return serve(ctx, ln, s.handler(), s.log)
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/healthz", s.health)
	mux.Handle("/livez", s.health)
	return mux
}

func serve(ctx context.Context, ln net.Listener, h http.Handler, log *zap.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(log)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
