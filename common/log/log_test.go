package log

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// syncBuffer is a WriteSyncer that tests can read while loggers write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Sync() error { return nil }

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// jsonLines decodes every line of the buffer as a JSON object.
func (b *syncBuffer) jsonLines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// newCaptured builds a logger into a buffer and undoes the klog global when the test ends.
func newCaptured(t *testing.T, o Options, component string) (*zap.Logger, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	l, err := newWithSink(o, component, buf)
	if err != nil {
		t.Fatalf("newWithSink: %v", err)
	}
	t.Cleanup(func() {
		klog.ClearLogger()
		if err := setKlogVerbosity(0); err != nil {
			t.Error(err)
		}
	})
	return l, buf
}

// runPodInformer runs a pod informer against host until the test ends.
func runPodInformer(t *testing.T, host string) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: host, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	lw := cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "pods", corev1.NamespaceAll, fields.Everything())
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); inf.Run(stop) }()
	t.Cleanup(func() { close(stop); <-done })
}

// waitForLine returns the first JSON line whose msg contains want.
func waitForLine(t *testing.T, buf *syncBuffer, want string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, line := range buf.jsonLines(t) {
			if msg, _ := line["msg"].(string); strings.Contains(msg, want) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q line from client-go within 20s; output:\n%s", want, buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkField(t *testing.T, line map[string]any, key, wantSubstring string) {
	t.Helper()
	got := fmt.Sprint(line[key])
	if !strings.Contains(got, wantSubstring) {
		t.Errorf("%s = %q, want it to contain %q (line %v)", key, got, wantSubstring, line)
	}
}

// client-go logs only through klog; these lines must come out of our zap
// core as JSON, with our logger name, level and client-go's own caller.
func TestClientGoLogsComeOutThroughZapAsJSON(t *testing.T) {
	t.Run("unreachable server, verbosity 2", func(t *testing.T) {
		// A port that was just closed: every request gets "connection refused",
		// which client-go retries and reports at V(2).
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()

		_, buf := newCaptured(t, Options{Level: "2", Format: FormatJSON}, "test-agent")
		runPodInformer(t, "http://"+addr)

		line := waitForLine(t, buf, "failed - backing off")
		checkField(t, line, "level", "debug")
		checkField(t, line, "v", "2")
		checkField(t, line, "logger", "test-agent.klog")
		checkField(t, line, "err", "connection refused")
		checkField(t, line, "err", addr)
		checkField(t, line, "caller", "reflector.go")
		if _, err := time.Parse("2006-01-02T15:04:05.000Z0700", fmt.Sprint(line["ts"])); err != nil {
			t.Errorf("ts %q is not ISO8601: %v", line["ts"], err)
		}
	})

	t.Run("server refuses, default level", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "forbidden", http.StatusForbidden)
		}))
		defer srv.Close()

		_, buf := newCaptured(t, Options{Format: FormatJSON}, "test-agent")
		runPodInformer(t, srv.URL)

		line := waitForLine(t, buf, "Failed to watch")
		checkField(t, line, "level", "error")
		checkField(t, line, "logger", "test-agent.klog")
		checkField(t, line, "error", "failed to list *v1.Pod")
		checkField(t, line, "type", "*v1.Pod")
		checkField(t, line, "caller", "reflector.go")
	})
}
