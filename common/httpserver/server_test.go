package httpserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

var errDown = errors.New("containerd unreachable")

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestHealthEndpoints(t *testing.T) {
	tests := []struct {
		name       string
		health     map[string]error // check name -> result
		ready      map[string]error
		path       string
		wantStatus int
		wantBody   string
	}{
		{name: "healthy", path: "/healthz", wantStatus: 200, wantBody: "ok"},
		{name: "livez same as healthz", path: "/livez", health: map[string]error{"pleg": nil}, wantStatus: 200, wantBody: "ok"},
		{name: "readyz healthy and ready", path: "/readyz", health: map[string]error{"pleg": nil}, ready: map[string]error{"synced": nil}, wantStatus: 200, wantBody: "ok"},
		{
			name: "failed check listed, reason withheld", path: "/healthz",
			health:     map[string]error{"runtime": errDown},
			wantStatus: 500, wantBody: "[-]runtime failed: reason withheld\nhealthz check failed\n",
		},
		{
			name: "verbose failure lists every check with the reason", path: "/livez?verbose",
			health:     map[string]error{"runtime": errDown},
			wantStatus: 500, wantBody: "[+]ping ok\n[-]runtime failed: containerd unreachable\nlivez check failed\n",
		},
		{
			name: "verbose success", path: "/healthz?verbose=1",
			health:     map[string]error{"runtime": nil},
			wantStatus: 200, wantBody: "[+]ping ok\n[+]runtime ok\nhealthz check passed\n",
		},
		{
			name: "ready checks do not fail healthz", path: "/healthz",
			ready:      map[string]error{"synced": errDown},
			wantStatus: 200, wantBody: "ok",
		},
		{
			name: "failed ready check fails readyz", path: "/readyz?verbose",
			health: map[string]error{"runtime": nil}, ready: map[string]error{"synced": errDown},
			wantStatus: 500, wantBody: "[+]ping ok\n[+]runtime ok\n[-]synced failed: containerd unreachable\nreadyz check failed\n",
		},
		{
			name: "failed health check fails readyz", path: "/readyz",
			health:     map[string]error{"runtime": errDown},
			wantStatus: 500, wantBody: "[-]runtime failed: reason withheld\nreadyz check failed\n",
		},
		{
			name: "exclude skips a check", path: "/readyz?exclude=synced",
			ready:      map[string]error{"synced": errDown},
			wantStatus: 200, wantBody: "ok",
		},
		{
			name: "one check by path", path: "/healthz/runtime?verbose",
			health:     map[string]error{"runtime": errDown, "other": nil},
			wantStatus: 500, wantBody: "[-]runtime failed: containerd unreachable\nhealthz check failed\n",
		},
		{
			name: "one passing check by path", path: "/readyz/synced",
			health:     map[string]error{"runtime": errDown},
			ready:      map[string]error{"synced": nil},
			wantStatus: 200, wantBody: "ok",
		},
		{name: "unknown check by path", path: "/healthz/nope", wantStatus: 404, wantBody: "healthz: no check named \"nope\"\n"},
		{name: "no metrics unless asked", path: "/metrics", wantStatus: 404, wantBody: "404 page not found\n"},
		{name: "no pprof unless asked", path: "/debug/pprof/", wantStatus: 404, wantBody: "404 page not found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New("127.0.0.1:0", zaptest.NewLogger(t))
			// Sorted insertion keeps the verbose output's order predictable.
			for _, name := range slices.Sorted(maps.Keys(tt.health)) {
				err := tt.health[name]
				s.AddHealthCheck(name, func(*http.Request) error { return err })
			}
			for _, name := range slices.Sorted(maps.Keys(tt.ready)) {
				err := tt.ready[name]
				s.AddReadyCheck(name, func(*http.Request) error { return err })
			}
			status, body := get(t, s.Handler(), tt.path)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Fatalf("GET %s = %d %q, want %d %q", tt.path, status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

func TestFailedCheckIsLoggedWithReason(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	s := New("127.0.0.1:0", zap.New(core))
	s.AddHealthCheck("runtime", func(*http.Request) error { return errDown })
	get(t, s.Handler(), "/healthz")

	entries := logs.FilterMessage("health check failed").All()
	if len(entries) != 1 {
		t.Fatalf("got %d log entries, want 1: %v", len(entries), logs.All())
	}
	if got := entries[0].ContextMap()["runtime"]; got != errDown.Error() {
		t.Errorf("logged reason = %v, want %q", got, errDown)
	}
}

func TestCheckGetsTheRequest(t *testing.T) {
	s := New("127.0.0.1:0", zaptest.NewLogger(t))
	var gotPath string
	s.AddHealthCheck("seen", func(r *http.Request) error { gotPath = r.URL.Path; return nil })
	get(t, s.Handler(), "/livez")
	if gotPath != "/livez" {
		t.Fatalf("check saw path %q, want /livez", gotPath)
	}
}

func TestAddCheckPanicsOnWiringMistakes(t *testing.T) {
	ok := func(*http.Request) error { return nil }
	tests := []struct {
		name string
		add  func(s *Server)
	}{
		{name: "empty name", add: func(s *Server) { s.AddHealthCheck("", ok) }},
		{name: "nil check", add: func(s *Server) { s.AddReadyCheck("x", nil) }},
		{name: "built-in ping", add: func(s *Server) { s.AddHealthCheck("ping", ok) }},
		{name: "health then ready", add: func(s *Server) { s.AddHealthCheck("x", ok); s.AddReadyCheck("x", ok) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tt.add(New("127.0.0.1:0", zap.NewNop()))
		})
	}
}

func TestMetricsFromTheGivenRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "kubenode_test_syncs_total", Help: "syncs"})
	reg.MustRegister(c)
	c.Add(3)

	s := New("127.0.0.1:0", zaptest.NewLogger(t), WithMetrics(reg))
	status, body := get(t, s.Handler(), "/metrics")
	if status != 200 || !strings.Contains(body, "kubenode_test_syncs_total 3") {
		t.Fatalf("GET /metrics = %d %q, want 200 with kubenode_test_syncs_total 3", status, body)
	}
	// Only the given registry: nothing from the global default one.
	if strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics serves the default registry's go_goroutines:\n%s", body)
	}
}

func TestProfiling(t *testing.T) {
	s := New("127.0.0.1:0", zaptest.NewLogger(t), WithProfiling(true))
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
		if status, body := get(t, s.Handler(), path); status != 200 || body == "" {
			t.Errorf("GET %s = %d (%d bytes), want 200 with a body", path, status, len(body))
		}
	}
}

func TestHandleAddsRoutes(t *testing.T) {
	s := New("127.0.0.1:0", zaptest.NewLogger(t))
	s.Handle("/configz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "{}") }))
	if status, body := get(t, s.Handler(), "/configz"); status != 200 || body != "{}" {
		t.Fatalf("GET /configz = %d %q", status, body)
	}
}

// start runs s in the background and returns its base URL and a stop
// function that ends Run and returns its error.
func start(t *testing.T, s *Server, scheme string) (string, func() error) {
	t.Helper()
	addr, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	stopped := false
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-errc:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return within 10s of its context ending")
			}
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return scheme + "://" + addr.String(), stop
}

func TestRunServesAndStops(t *testing.T) {
	s := New("127.0.0.1:0", zaptest.NewLogger(t))
	url, stop := start(t, s, "http")

	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("GET /healthz = %d %q, want 200 ok", resp.StatusCode, body)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after its context ended, want nil", err)
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Fatal("server still answers after Run returned")
	}
}

func TestShutdownLetsInFlightRequestsFinish(t *testing.T) {
	s := New("127.0.0.1:0", zaptest.NewLogger(t), WithShutdownTimeout(5*time.Second))
	entered, release := make(chan struct{}), make(chan struct{})
	s.Handle("/slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		if r.Context().Err() != nil {
			http.Error(w, "request context cancelled by shutdown", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "done")
	}))
	url, stop := start(t, s, "http")

	type reply struct {
		status int
		body   string
		err    error
	}
	replies := make(chan reply, 1)
	go func() {
		resp, err := http.Get(url + "/slow")
		if err != nil {
			replies <- reply{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		replies <- reply{status: resp.StatusCode, body: string(b)}
	}()
	<-entered

	stopErr := make(chan error, 1)
	go func() { stopErr <- stop() }()
	time.Sleep(100 * time.Millisecond) // let Shutdown begin while /slow is in flight
	close(release)

	r := <-replies
	if r.err != nil || r.status != 200 || r.body != "done" {
		t.Fatalf("in-flight request got %d %q %v, want 200 done", r.status, r.body, r.err)
	}
	if err := <-stopErr; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func TestShutdownTimeoutClosesStuckRequests(t *testing.T) {
	s := New("127.0.0.1:0", zaptest.NewLogger(t), WithShutdownTimeout(200*time.Millisecond))
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	s.Handle("/stuck", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(entered)
		<-release
	}))
	url, stop := start(t, s, "http")
	go func() {
		if resp, err := http.Get(url + "/stuck"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered

	began := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Fatalf("Run took %v to return with a 200ms shutdown timeout", took)
	}
}

func TestListenErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	tests := []struct {
		name    string
		server  *Server
		wantErr string
	}{
		{name: "port taken", server: New(taken.Addr().String(), zap.NewNop()), wantErr: "listening on " + taken.Addr().String()},
		{name: "TLS without certificate", server: New("127.0.0.1:0", zap.NewNop(), WithTLS(&tls.Config{})), wantErr: "TLS config has no certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.server.Listen(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Listen() = %v, want error containing %q", err, tt.wantErr)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := tt.server.Run(ctx); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Run() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRunTwice(t *testing.T) {
	s := New("127.0.0.1:0", zaptest.NewLogger(t))
	url, stop := start(t, s, "http")
	defer stop()
	// Once it answers, the first Run is past its start.
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "Run called twice") {
		t.Fatalf("second Run = %v, want an error", err)
	}
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	s := New("127.0.0.1:0", zaptest.NewLogger(t), WithTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	url, _ := start(t, s, "https")

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok" || resp.TLS == nil {
		t.Fatalf("GET /readyz over TLS = %d %q (TLS %v), want 200 ok", resp.StatusCode, body, resp.TLS != nil)
	}

	// Plain HTTP to the TLS port gets no answer it can use.
	if resp, err := http.Get("http://" + strings.TrimPrefix(url, "https://") + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP request to the TLS server got 200")
		}
	}
}

// selfSigned makes a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "kubenode-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
