package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	kubeletv1alpha1 "github.com/kubenode/kubenode/api/kubelet/v1alpha1"
	"github.com/kubenode/kubenode/kubelet/internal/server/logs"
	"github.com/kubenode/kubenode/kubelet/internal/server/machine"
	"github.com/kubenode/kubenode/kubelet/internal/stats"
)

// Pods lists the pods the kubelet manages (the pod manager).
type Pods interface {
	List() []*v1.Pod
}

// Runtime is the part of the CRI runtime service the API server uses: finding containers and
// their logs, the streaming calls, and stats.
type Runtime interface {
	ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error)
	ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error)
	ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error)
	Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error)
	Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error)
	PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error)
	ListContainerStats(ctx context.Context, filter *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error)
	ReopenContainerLog(ctx context.Context, id string) error
	// ExecSync runs a command to completion (/run).
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (stdout, stderr []byte, err error)
}

// Stats reads the node's and its running pods' usage: the one source of /stats/summary,
// /metrics/resource and /metrics/cadvisor.
type Stats interface {
	Snapshot(ctx context.Context) (*stats.Snapshot, error)
}

// Config is everything the API server needs. Authn and Authz are required; the rest may be
// left empty where noted.
type Config struct {
	// Addr is host:port to listen on.
	Addr     string
	NodeName string
	// TLS carries the serving certificate; the server sets the minimum version and client
	// certificate requests itself.
	TLS     *tls.Config
	Authn   Authenticator
	Authz   Authorizer
	Pods    Pods
	Runtime Runtime
	Stats   Stats // nil: /stats/summary, /metrics/resource and /metrics/cadvisor are 404
	Metrics prometheus.Gatherer
	// Configz is the effective configuration /configz serves as {"kubeletconfig": ...}; nil
	// or Debugging off: 404.
	Configz   any
	Debugging bool // logs, exec, attach, port-forward, run, runningpods, spec, node logs
	// LogDir is the node's log directory /logs/ serves (/var/log on a node); "" or Debugging
	// off: 404.
	LogDir string
	// Machine answers /spec; nil or Debugging off: 404.
	Machine Machine
	// RuntimeName prefixes container IDs in /runningpods (containerd://<id>); default "cri".
	RuntimeName string
	// Rotator, when set, runs with the server: the logs it rotates are the ones the server
	// reads, and follow handles its renames.
	Rotator *logs.Rotator
	// RuntimeTimeout bounds each CRI call a request makes.
	RuntimeTimeout time.Duration
	Log            *zap.Logger
}

// Server is the kubelet's authenticated API on :10250. New starts nothing; Run serves.
type Server struct {
	cfg      Config
	handler  http.Handler
	requests *prometheus.CounterVec
	idents   *identityCache

	mu       sync.Mutex
	listener net.Listener
}

// New validates cfg and builds the routes.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Addr == "":
		return nil, errors.New("kubelet server: address is required")
	case cfg.NodeName == "":
		return nil, errors.New("kubelet server: node name is required")
	case cfg.TLS == nil || (len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil):
		return nil, errors.New("kubelet server: a serving certificate is required")
	case cfg.Authn == nil || cfg.Authz == nil:
		return nil, errors.New("kubelet server: an authenticator and an authorizer are required")
	case cfg.Pods == nil || cfg.Runtime == nil:
		return nil, errors.New("kubelet server: the pod manager and the CRI runtime are required")
	case cfg.Log == nil:
		return nil, errors.New("kubelet server: a logger is required")
	}
	if cfg.RuntimeTimeout <= 0 {
		cfg.RuntimeTimeout = 2 * time.Minute
	}
	if cfg.RuntimeName == "" {
		cfg.RuntimeName = "cri"
	}
	s := &Server{cfg: cfg, requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kubelet_http_requests_total", Help: "Requests to the kubelet API server by method, first path segment and code.",
	}, []string{"method", "path", "code"})}
	if cfg.Metrics == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), s.requests)
		s.cfg.Metrics = reg
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /pods", s.pods)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Metrics, promhttp.HandlerOpts{}))
	if cfg.Stats != nil {
		s.idents = &identityCache{rt: cfg.Runtime, log: cfg.Log}
		mux.HandleFunc("GET /stats/summary", s.summary)
		mux.HandleFunc("GET /metrics/resource", s.resourceMetrics)
		mux.HandleFunc("GET /metrics/cadvisor", s.cadvisorMetrics)
	}
	// As upstream, /configz is one of the debugging handlers.
	if cfg.Configz != nil && cfg.Debugging {
		mux.HandleFunc("GET /configz", s.configz)
	}
	if cfg.Debugging {
		mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", s.containerLogs)
		for _, p := range []string{"/exec/{namespace}/{pod}/{container}", "/exec/{namespace}/{pod}/{uid}/{container}"} {
			mux.HandleFunc(p, s.exec)
		}
		for _, p := range []string{"/attach/{namespace}/{pod}/{container}", "/attach/{namespace}/{pod}/{uid}/{container}"} {
			mux.HandleFunc(p, s.attach)
		}
		for _, p := range []string{"/portForward/{namespace}/{pod}", "/portForward/{namespace}/{pod}/{uid}"} {
			mux.HandleFunc(p, s.portForward)
		}
		for _, p := range []string{"POST /run/{namespace}/{pod}/{container}", "POST /run/{namespace}/{pod}/{uid}/{container}"} {
			mux.HandleFunc(p, s.run)
		}
		mux.HandleFunc("GET /runningpods", s.runningPods)
		mux.HandleFunc("GET /runningpods/{$}", s.runningPods)
		// Upstream served /spec/ among the debugging handlers until it dropped the endpoint;
		// the authorization mapping (nodes/spec) is unchanged.
		if cfg.Machine != nil {
			mux.HandleFunc("GET /spec", s.spec)
			mux.HandleFunc("GET /spec/{$}", s.spec)
		}
		if cfg.LogDir != "" {
			mux.HandleFunc("GET /logs/", s.nodeLogs)
		}
	}
	s.handler = s.withAuth(mux)
	return s, nil
}

// Handler is the authenticated routes (for tests and in-process callers).
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) withAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			seg, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
			s.requests.WithLabelValues(r.Method, "/"+seg, strconv.Itoa(rec.code)).Inc()
		}()
		u, ok, err := s.cfg.Authn.Authenticate(r)
		if !ok {
			if err != nil {
				s.cfg.Log.Debug("authentication failed", zap.String("path", r.URL.Path), zap.Error(err))
			}
			http.Error(rec, "Unauthorized", http.StatusUnauthorized)
			return
		}
		var tried []string
		for _, a := range attributesFor(r.Method, r.URL.Path, s.cfg.NodeName) {
			if a.Verb == "" {
				http.Error(rec, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			allowed, _, err := s.cfg.Authz.Authorize(r.Context(), u, a)
			if err != nil {
				s.cfg.Log.Warn("authorization failed", zap.String("user", u.Name), zap.String("path", r.URL.Path), zap.Error(err))
				http.Error(rec, fmt.Sprintf("Authorization error (user=%s, verb=%s, resource=nodes, subresource=%s)", u.Name, a.Verb, a.Subresource), http.StatusInternalServerError)
				return
			}
			if allowed {
				next.ServeHTTP(rec, r)
				return
			}
			tried = append(tried, a.Subresource)
		}
		attrs := attributesFor(r.Method, r.URL.Path, s.cfg.NodeName)
		msg := fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource(s)=[%s])", u.Name, attrs[0].Verb, strings.Join(tried, ", "))
		http.Error(rec, msg, http.StatusForbidden)
	})
}

// statusRecorder notes the response code for metrics and passes everything else through,
// including hijacking (exec upgrades) and flushing (followed logs).
type statusRecorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Hijack is here because the upgrade proxy asserts http.Hijacker on the writer it gets.
func (r *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	r.code = http.StatusSwitchingProtocols
	return http.NewResponseController(r.ResponseWriter).Hijack()
}

func (r *statusRecorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }

// Listen binds the address so a taken port fails the kubelet at start.
func (s *Server) Listen() (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		ln, err := net.Listen("tcp", s.cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("kubelet server (address/port): %w", err)
		}
		s.listener = ln
	}
	return s.listener.Addr(), nil
}

// Run serves HTTPS until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if _, err := s.Listen(); err != nil {
		return err
	}
	tc := s.cfg.TLS.Clone()
	tc.MinVersion = tls.VersionTLS12
	// Certificates are verified by the authenticator, so a request with a bad or no certificate
	// can still authenticate with a token.
	tc.ClientAuth = tls.RequestClientCert
	// http/1.1 only: exec, attach and port-forward upgrade the connection, which HTTP/2 cannot.
	tc.NextProtos = []string{"http/1.1"}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          zap.NewStdLog(s.cfg.Log),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(s.listener, tc)) }()
	if s.cfg.Rotator != nil {
		var wg sync.WaitGroup
		wg.Add(1)
		rctx, stop := context.WithCancel(ctx)
		go func() { defer wg.Done(); s.cfg.Rotator.Run(rctx, logRotationInterval) }()
		defer wg.Wait()
		defer stop()
	}
	s.cfg.Log.Info("serving", zap.String("address", s.listener.Addr().String()))
	select {
	case err := <-errc:
		return fmt.Errorf("kubelet server: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		_ = srv.Close()
	}
	return nil
}

// logRotationInterval is how often container log sizes are checked (upstream's
// containerLogMonitorInterval default).
const logRotationInterval = 10 * time.Second

// Deps are what NewFromConfig takes from the kubelet.
type Deps struct {
	NodeName string
	NodeIPs  []string
	RootDir  string
	// Client is the API client; nil (standalone) allows no token authentication and only
	// AlwaysAllow authorization.
	Client  kubernetes.Interface
	Runtime Runtime
	Pods    Pods
	Metrics prometheus.Gatherer
	// LogDir is the node's log directory (/var/log) that /logs/ serves.
	LogDir string
	// RuntimeName is the CRI runtime's name (containerd).
	RuntimeName string
	Log         *zap.Logger
}

// NewFromConfig builds the server the kubelet configuration describes: serving certificate
// (tlsCertFile/tlsPrivateKeyFile, or a self-signed one under <root-dir>/pki), authentication and
// authorization.
func NewFromConfig(kc *kubeletv1alpha1.KubeletConfiguration, d Deps) (*Server, error) {
	now := time.Now
	var cert tls.Certificate
	var err error
	if kc.TLSCertFile != "" || kc.TLSPrivateKeyFile != "" {
		cert, err = tls.LoadX509KeyPair(kc.TLSCertFile, kc.TLSPrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("tlsCertFile/tlsPrivateKeyFile: %w", err)
		}
	} else {
		cert, err = LoadOrCreateSelfSigned(filepath.Join(d.RootDir, "pki"), d.NodeName, d.NodeIPs, now())
		if err != nil {
			return nil, fmt.Errorf("self-signed serving certificate: %w", err)
		}
	}
	var chain []Authenticator
	if f := kc.Authentication.X509.ClientCAFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("authentication.x509.clientCAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("authentication.x509.clientCAFile %s: no PEM certificates", f)
		}
		chain = append(chain, certAuthenticator{roots: pool, now: now})
	}
	if we := kc.Authentication.Webhook.Enabled; we != nil && *we {
		if d.Client == nil {
			// Standalone: nobody can review a token, so bearer tokens are refused.
			d.Log.Warn("no API server: bearer tokens are not accepted (authentication.webhook)")
		} else {
			chain = append(chain, newTokenAuthenticator(d.Client.AuthenticationV1().TokenReviews(), kc.Authentication.Webhook.CacheTTL.Duration, now))
		}
	}
	anon := kc.Authentication.Anonymous.Enabled != nil && *kc.Authentication.Anonymous.Enabled
	var authz Authorizer
	switch kc.Authorization.Mode {
	case kubeletv1alpha1.AuthorizationModeAlwaysAllow:
		authz = alwaysAllow{}
	case kubeletv1alpha1.AuthorizationModeWebhook, "":
		if d.Client == nil {
			// Standalone: nobody can answer a SubjectAccessReview, so nothing is allowed.
			d.Log.Warn("no API server: every request is denied (authorization.mode Webhook; use AlwaysAllow for a standalone kubelet)")
			authz = denyAll{}
			break
		}
		w := kc.Authorization.Webhook
		authz = newWebhookAuthorizer(d.Client.AuthorizationV1().SubjectAccessReviews(), w.CacheAuthorizedTTL.Duration, w.CacheUnauthorizedTTL.Duration, now)
	default:
		return nil, fmt.Errorf("authorization.mode: %q is not Webhook or AlwaysAllow", kc.Authorization.Mode)
	}
	debugging := kc.EnableDebuggingHandlers == nil || *kc.EnableDebuggingHandlers
	var rotator *logs.Rotator
	if kc.ContainerLogMaxSize != "" {
		q, err := resource.ParseQuantity(kc.ContainerLogMaxSize)
		if err != nil {
			return nil, fmt.Errorf("containerLogMaxSize: %w", err)
		}
		files := int32(kubeletv1alpha1.DefaultContainerLogMaxFiles)
		if kc.ContainerLogMaxFiles != nil {
			files = *kc.ContainerLogMaxFiles
		}
		rotator, err = logs.NewRotator(d.Runtime, q.Value(), int(files), kc.RuntimeRequestTimeout.Duration, now, d.Log.Named("logrotate"))
		if err != nil {
			return nil, err
		}
	}
	return New(Config{
		Addr:     net.JoinHostPort(kc.Address, strconv.Itoa(int(kc.Port))),
		NodeName: d.NodeName,
		TLS:      &tls.Config{Certificates: []tls.Certificate{cert}},
		Authn:    chainAuthenticator{chain: chain, anonymous: anon},
		Authz:    authz,
		Pods:     d.Pods, Runtime: d.Runtime, Metrics: d.Metrics,
		Stats:          stats.New(d.Runtime, d.NodeName, "/proc", now),
		Configz:        kc,
		Debugging:      debugging,
		LogDir:         d.LogDir,
		Machine:        machine.New("/", now),
		RuntimeName:    d.RuntimeName,
		Rotator:        rotator,
		RuntimeTimeout: kc.RuntimeRequestTimeout.Duration,
		Log:            d.Log,
	})
}
