package healthcheck

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestProxyHealth(t *testing.T) {
	tests := []struct {
		name     string
		steps    func(h *ProxyHealth, c *clock)
		path     string
		wantCode int
		wantNode bool
	}{
		{name: "fresh", steps: func(*ProxyHealth, *clock) {}, path: "/healthz", wantCode: 200, wantNode: true},
		{name: "queued, within timeout", steps: func(h *ProxyHealth, c *clock) { h.QueuedUpdate(); c.advance(59 * time.Second) }, path: "/healthz", wantCode: 200, wantNode: true},
		{name: "queued, overdue", steps: func(h *ProxyHealth, c *clock) {
			h.QueuedUpdate()
			c.advance(30 * time.Second)
			h.QueuedUpdate() // a later change does not reset the clock
			c.advance(31 * time.Second)
		}, path: "/healthz", wantCode: 503, wantNode: true},
		{name: "overdue then synced", steps: func(h *ProxyHealth, c *clock) { h.QueuedUpdate(); c.advance(2 * time.Minute); h.Updated() }, path: "/healthz", wantCode: 200, wantNode: true},
		{name: "idle for long without changes stays healthy", steps: func(h *ProxyHealth, c *clock) { h.Updated(); c.advance(time.Hour) }, path: "/healthz", wantCode: 200, wantNode: true},
		{name: "node unhealthy fails healthz", steps: func(h *ProxyHealth, _ *clock) { h.SetNodeHealthy(false) }, path: "/healthz", wantCode: 503},
		{name: "node unhealthy keeps livez", steps: func(h *ProxyHealth, _ *clock) { h.SetNodeHealthy(false) }, path: "/livez", wantCode: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			h := NewProxyHealth(time.Minute, c.now)
			tc.steps(h, c)
			srv := NewServer("", zap.NewNop(), h)
			rec := httptest.NewRecorder()
			srv.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if rec.Code != tc.wantCode {
				t.Errorf("code = %d, want %d", rec.Code, tc.wantCode)
			}
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body.String(), err)
			}
			if body["currentTime"] != c.now().Format(time.RFC3339) {
				t.Errorf("currentTime = %v, want %v", body["currentTime"], c.now().Format(time.RFC3339))
			}
			if _, ok := body["lastUpdated"]; !ok {
				t.Error("no lastUpdated in body")
			}
			if tc.path == "/healthz" && body["nodeHealthy"] != tc.wantNode {
				t.Errorf("nodeHealthy = %v, want %v", body["nodeHealthy"], tc.wantNode)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestServerRunServesAndStops(t *testing.T) {
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(addr, zap.NewNop(), NewProxyHealth(time.Minute, nil)).Run(ctx) }()
	code, _ := getEventually(t, "http://"+addr+"/healthz")
	if code != 200 {
		t.Errorf("healthz = %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := NewServer("127.0.0.1:notaport", zap.NewNop(), NewProxyHealth(time.Minute, nil)).Run(context.Background()); err == nil {
		t.Error("bad address accepted")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func get(url string) (int, []byte, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func getEventually(t *testing.T, url string) (int, []byte) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		code, body, err := get(url)
		if err == nil {
			return code, body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServiceHealthNodePorts(t *testing.T) {
	proxy := NewProxyHealth(time.Minute, nil)
	sh := NewServiceHealth(zap.NewNop(), proxy)
	defer sh.Close()
	a := types.NamespacedName{Namespace: "ns", Name: "a"}
	b := types.NamespacedName{Namespace: "ns", Name: "b"}
	pa, pb := freePort(t), freePort(t)
	url := func(p int) string { return "http://127.0.0.1:" + strconv.Itoa(p) + "/" }
	lo := []netip.Addr{netip.MustParseAddr("127.0.0.1")}

	if err := sh.SyncServices(lo, map[types.NamespacedName]uint16{a: uint16(pa), b: uint16(pb)}, map[types.NamespacedName]int{a: 2}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		port      int
		wantCode  int
		wantLocal float64
		wantName  string
	}{
		{port: pa, wantCode: 200, wantLocal: 2, wantName: "a"},
		{port: pb, wantCode: 503, wantLocal: 0, wantName: "b"},
	}
	for _, tc := range tests {
		t.Run(tc.wantName, func(t *testing.T) {
			code, body := getEventually(t, url(tc.port))
			var st struct {
				Service             map[string]string `json:"service"`
				LocalEndpoints      float64           `json:"localEndpoints"`
				ServiceProxyHealthy bool              `json:"serviceProxyHealthy"`
			}
			if err := json.Unmarshal(body, &st); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if code != tc.wantCode || st.LocalEndpoints != tc.wantLocal || st.Service["name"] != tc.wantName || st.Service["namespace"] != "ns" || !st.ServiceProxyHealthy {
				t.Errorf("got %d %+v, want %d local=%v", code, st, tc.wantCode, tc.wantLocal)
			}
		})
	}

	// b gains an endpoint, a goes away: a's port closes, b answers 200.
	if err := sh.SyncServices(lo, map[types.NamespacedName]uint16{b: uint16(pb)}, map[types.NamespacedName]int{b: 1}); err != nil {
		t.Fatal(err)
	}
	if code, _ := getEventually(t, url(pb)); code != 200 {
		t.Errorf("b after gaining an endpoint: %d", code)
	}
	if _, _, err := get(url(pa)); err == nil {
		t.Error("a's port still open after the service went away")
	}

	// A port already taken is reported, naming the service.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tp := uint16(taken.Addr().(*net.TCPAddr).Port)
	if err := sh.SyncServices(lo, map[types.NamespacedName]uint16{a: tp, b: uint16(pb)}, nil); err == nil {
		t.Error("taken port not reported")
	}
}

// TestServiceHealthListensOnNodePortAddresses uses loopback addresses as
// the node's addresses: a port is served on exactly the node-port
// addresses, and follows them as they change.
func TestServiceHealthListensOnNodePortAddresses(t *testing.T) {
	sh := NewServiceHealth(zap.NewNop(), nil)
	defer sh.Close()
	svc := types.NamespacedName{Namespace: "ns", Name: "lb"}
	port := freePort(t)
	ports := map[types.NamespacedName]uint16{svc: uint16(port)}
	local := map[types.NamespacedName]int{svc: 1}
	steps := []struct {
		name       string
		addrs      []string
		wantOpen   []string
		wantClosed []string
	}{
		{name: "two node addresses", addrs: []string{"127.0.0.2", "127.0.0.3"},
			wantOpen: []string{"127.0.0.2", "127.0.0.3"}, wantClosed: []string{"127.0.0.1", "127.0.0.4"}},
		{name: "an address moves", addrs: []string{"127.0.0.3", "127.0.0.4"},
			wantOpen: []string{"127.0.0.3", "127.0.0.4"}, wantClosed: []string{"127.0.0.2"}},
		{name: "every address", addrs: []string{"0.0.0.0"},
			wantOpen: []string{"127.0.0.2", "127.0.0.5"}},
		{name: "back to one address", addrs: []string{"127.0.0.6"},
			wantOpen: []string{"127.0.0.6"}, wantClosed: []string{"127.0.0.2", "127.0.0.5"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			var addrs []netip.Addr
			for _, a := range st.addrs {
				addrs = append(addrs, netip.MustParseAddr(a))
			}
			if err := sh.SyncServices(addrs, ports, local); err != nil {
				t.Fatal(err)
			}
			for _, a := range st.wantOpen {
				if code, _ := getEventually(t, "http://"+a+":"+strconv.Itoa(port)+"/"); code != 200 {
					t.Errorf("%s: code %d, want 200", a, code)
				}
			}
			for _, a := range st.wantClosed {
				if _, _, err := get("http://" + a + ":" + strconv.Itoa(port) + "/"); err == nil {
					t.Errorf("%s answers; it is not a node-port address", a)
				}
			}
		})
	}
}

func TestServiceHealthRetriesAnAddressThatWasTaken(t *testing.T) {
	sh := NewServiceHealth(zap.NewNop(), nil)
	defer sh.Close()
	svc := types.NamespacedName{Namespace: "ns", Name: "lb"}
	taken, err := net.Listen("tcp", "127.0.0.7:0")
	if err != nil {
		t.Fatal(err)
	}
	port := taken.Addr().(*net.TCPAddr).Port
	ports := map[types.NamespacedName]uint16{svc: uint16(port)}
	addrs := []netip.Addr{netip.MustParseAddr("127.0.0.7"), netip.MustParseAddr("127.0.0.8")}
	err = sh.SyncServices(addrs, ports, nil)
	if err == nil || !strings.Contains(err.Error(), "ns/lb") || !strings.Contains(err.Error(), "127.0.0.7") {
		t.Errorf("taken address: err = %v, want one naming ns/lb and 127.0.0.7", err)
	}
	if code, _ := getEventually(t, "http://127.0.0.8:"+strconv.Itoa(port)+"/"); code != 503 {
		t.Errorf("the free address: code %d, want 503 (no local endpoints)", code)
	}
	taken.Close()
	if err := sh.SyncServices(addrs, ports, nil); err != nil {
		t.Fatalf("retry once the address is free: %v", err)
	}
	if code, _ := getEventually(t, "http://127.0.0.7:"+strconv.Itoa(port)+"/"); code != 503 {
		t.Errorf("the freed address: code %d, want 503", code)
	}
	if err := sh.SyncServices(nil, ports, nil); err == nil {
		t.Error("health-check ports with no address to serve them on: no error")
	}
}
