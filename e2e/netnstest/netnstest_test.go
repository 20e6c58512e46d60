package netnstest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
}

// nsID names the network namespace the calling thread is in.
func nsID() (string, error) { return os.Readlink("/proc/thread-self/ns/net") }

func idOf(t *testing.T, ns netns.NsHandle) string {
	t.Helper()
	var id string
	if err := Do(ns, func() error {
		var err error
		id, err = nsID()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestDoAndStartRunInTheNamespace(t *testing.T) {
	needRoot(t)
	// This thread's, not /proc/self's: the main thread may be one that New discarded.
	runtime.LockOSThread()
	host, err := nsID()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	ns := New(t)
	inside := idOf(t, ns)
	if inside == host {
		t.Fatalf("Do ran in the host namespace %s", host)
	}
	var out strings.Builder
	cmd := exec.Command("/bin/sh", "-c", "readlink /proc/self/ns/net")
	cmd.Stdout = &out
	if err := Start(ns, cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != inside {
		t.Fatalf("started process is in %s, want %s", got, inside)
	}
}

func TestNamedIsRemovedAtTestEnd(t *testing.T) {
	needRoot(t)
	name := fmt.Sprintf("kubenode-test-netnstest-%d", os.Getpid())
	t.Run("make", func(t *testing.T) {
		NewNamed(t, name)
		if _, err := os.Stat("/run/netns/" + name); err != nil {
			t.Fatalf("named namespace not mounted: %v", err)
		}
	})
	if _, err := os.Stat("/run/netns/" + name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("/run/netns/%s left behind: %v", name, err)
	}
}

func TestRelayReachesHostLoopbackUntilClosed(t *testing.T) {
	needRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "host") }),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })

	ns := New(t)
	client := NewClient(ns, 2*time.Second)
	url := "http://" + ln.Addr().String() + "/"
	if _, _, err := client.Get(url); err == nil {
		t.Fatal("the namespace reached the host's loopback without a relay")
	}
	relay := NewRelay(t, ns, ln.Addr().String())
	code, body, err := client.Get(url)
	if err != nil || code != http.StatusOK || body != "host" {
		t.Fatalf("through the relay: %d %q %v", code, body, err)
	}
	relay.Close()
	if _, _, err := client.Get(url); err == nil {
		t.Fatal("a closed relay still answers")
	}
}
