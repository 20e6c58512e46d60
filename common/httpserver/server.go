package httpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// DefaultShutdownTimeout bounds how long Run waits for in-flight requests
// once its context ends.
const DefaultShutdownTimeout = 5 * time.Second

// Option configures a Server.
type Option func(*Server)

// WithMetrics serves /metrics from g. The caller owns the registry, so
// nothing registers into the process-global default one.
func WithMetrics(g prometheus.Gatherer) Option {
	return func(s *Server) { s.metrics = g }
}

// WithProfiling serves net/http/pprof under /debug/pprof/ when enabled.
func WithProfiling(enabled bool) Option {
	return func(s *Server) { s.pprof = enabled }
}

// WithTLS serves HTTPS with cfg, which must carry a certificate
// (Certificates or GetCertificate).
func WithTLS(cfg *tls.Config) Option {
	return func(s *Server) { s.tls = cfg }
}

// WithShutdownTimeout sets how long Run waits for in-flight requests after
// its context ends before closing their connections.
func WithShutdownTimeout(d time.Duration) Option {
	return func(s *Server) { s.shutdownTimeout = d }
}

// Server serves health, readiness, metrics and profiling endpoints, plus
// whatever the caller adds with Handle. New starts nothing; Run serves.
type Server struct {
	addr            string
	log             *zap.Logger
	metrics         prometheus.Gatherer
	pprof           bool
	tls             *tls.Config
	shutdownTimeout time.Duration

	health checkSet
	ready  checkSet

	mu       sync.Mutex
	mux      *http.ServeMux
	listener net.Listener
	running  bool
}

// New returns a server for addr ("host:port"; port 0 picks a free port, see
// Listen). log is used as is; callers name it per component.
func New(addr string, log *zap.Logger, opts ...Option) *Server {
	s := &Server{addr: addr, log: log, shutdownTimeout: DefaultShutdownTimeout}
	for _, o := range opts {
		o(s)
	}
	s.health.add("ping", func(*http.Request) error { return nil })
	s.mux = s.newMux()
	return s
}

func (s *Server) newMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, ep := range []string{"healthz", "livez"} {
		h := checkHandler{endpoint: ep, checks: s.health.list, log: s.log}
		mux.Handle("/"+ep, h)
		mux.Handle("/"+ep+"/", h)
	}
	// Ready means healthy and ready, as in kube-apiserver.
	readyz := checkHandler{endpoint: "readyz", log: s.log, checks: func() []check {
		return append(s.health.list(), s.ready.list()...)
	}}
	mux.Handle("/readyz", readyz)
	mux.Handle("/readyz/", readyz)
	if s.metrics != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{
			ErrorLog:      zap.NewStdLog(s.log),
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	if s.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// AddHealthCheck adds a check to /healthz, /livez and /readyz. It panics on
// an empty or duplicate name or a nil check, as http.ServeMux does for bad
// patterns: those are wiring mistakes.
func (s *Server) AddHealthCheck(name string, check func(*http.Request) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustBeNew(name, check)
	s.health.add(name, check)
}

// AddReadyCheck adds a check to /readyz only. It panics like AddHealthCheck.
func (s *Server) AddReadyCheck(name string, check func(*http.Request) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustBeNew(name, check)
	s.ready.add(name, check)
}

func (s *Server) mustBeNew(name string, check func(*http.Request) error) {
	switch {
	case name == "":
		panic("httpserver: check name is empty")
	case check == nil:
		panic(fmt.Sprintf("httpserver: check %q is nil", name))
	case s.health.has(name) || s.ready.has(name):
		panic(fmt.Sprintf("httpserver: check %q added twice", name))
	}
}

// Handle serves h at pattern (http.ServeMux syntax) beside the built-in
// endpoints.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// Handler returns the server's routes, for tests and for callers that serve
// them some other way.
func (s *Server) Handler() http.Handler { return s.mux }

// Listen binds the address and returns it, so callers learn the port when
// addr asked for port 0, and fail early when it is taken. Run calls it when
// the caller did not.
func (s *Server) Listen() (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener != nil {
		return s.listener.Addr(), nil
	}
	if s.tls != nil && len(s.tls.Certificates) == 0 && s.tls.GetCertificate == nil && s.tls.GetConfigForClient == nil {
		return nil, fmt.Errorf("serving %s: TLS config has no certificate", s.addr)
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", s.addr, err)
	}
	s.listener = ln
	return ln.Addr(), nil
}

// Run serves until ctx ends, then shuts down: it stops accepting, waits up
// to the shutdown timeout for in-flight requests and closes the rest. It
// returns nil after a shutdown and an error if serving failed. A Server runs
// once. A Server that Listen bound must be Run, or its port stays taken.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return fmt.Errorf("serving %s: Run called twice", s.addr)
	}
	s.running = true
	s.mu.Unlock()

	addr, err := s.Listen()
	if err != nil {
		return err
	}
	ln := s.listener
	scheme := "http"
	if s.tls != nil {
		cfg := s.tls.Clone()
		if len(cfg.NextProtos) == 0 {
			cfg.NextProtos = []string{"h2", "http/1.1"}
		}
		ln = tls.NewListener(ln, cfg)
		scheme = "https"
	}
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          zap.NewStdLog(s.log),
		// Requests keep ctx's values but not its cancellation, so in-flight
		// requests can finish during a graceful shutdown.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("serving", zap.String("address", scheme+"://"+addr.String()))

	select {
	case err := <-errc:
		return fmt.Errorf("serving %s: %w", addr, err)
	case <-ctx.Done():
	}

	sctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Info("shutdown timed out, closing open connections", zap.Duration("timeout", s.shutdownTimeout))
		err = srv.Close()
	}
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	if err != nil {
		return fmt.Errorf("shutting down %s: %w", addr, err)
	}
	s.log.Info("stopped", zap.String("address", scheme+"://"+addr.String()))
	return nil
}
