package proxier

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubenode/kubenode/kubeproxy/internal/nft"
	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
)

// signalingDataplane passes syncs to a real backend and reports each result.
type signalingDataplane struct {
	Dataplane
	done chan error
}

func (s signalingDataplane) Sync(ctx context.Context, p *plan.Plan, changed map[plan.ServicePortName]struct{}, full bool) error {
	err := s.Dataplane.Sync(ctx, p, changed, full)
	s.done <- err
	return err
}

// inNS runs fn on a thread inside ns; sockets made there stay in ns.
func inNS(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return err
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		runtime.LockOSThread() // leave the thread locked: Go discards it
		return fmt.Errorf("returning to the original netns: %w", err)
	}
	return fnErr
}

// TestCoreWithNftablesInNetns runs the whole core (fake API -> informers ->
// trackers -> plan -> runner) with the real nftables backend in a
// throwaway network namespace and sends traffic through the result.
func TestCoreWithNftablesInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New() // anonymous: gone once closed
	if err == nil {
		err = netns.Set(orig)
	}
	orig.Close()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()

	// Node 10.99.0.5, endpoints 10.99.0.20 and .21, all on lo; the service
	// range is routed to lo so the nat output hook sees the traffic.
	if err := inNS(ns, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(lo); err != nil {
			return err
		}
		for _, a := range []string{"10.99.0.5/32", "10.99.0.20/32", "10.99.0.21/32"} {
			addr, _ := netlink.ParseAddr(a)
			if err := h.AddrAdd(lo, addr); err != nil {
				return fmt.Errorf("adding %s: %w", a, err)
			}
		}
		_, dst, _ := net.ParseCIDR("10.96.0.0/12")
		return h.RouteAdd(&netlink.Route{LinkIndex: lo.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK})
	}); err != nil {
		t.Fatalf("setting up the namespace: %v", err)
	}
	for _, ep := range []string{"10.99.0.20", "10.99.0.21"} {
		var ln net.Listener
		if err := inNS(ns, func() (err error) { ln, err = net.Listen("tcp", ep+":8080"); return err }); err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, ep) }), ReadHeaderTimeout: time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}

	backend, err := nft.New(nft.Config{Family: plan.IPv4, Table: "kubenode-test-core", NetNSFd: int(ns)}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := backend.Cleanup(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}()
	dp := signalingDataplane{Dataplane: backend, done: make(chan error, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(&v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "me"},
		Status:     v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.99.0.5"}}},
	})
	p, err := New(zap.NewNop(), Config{NodeName: "me", SyncPeriod: time.Hour}, Deps{Dataplanes: map[plan.Family]Dataplane{plan.IPv4: dp}})
	if err != nil {
		t.Fatal(err)
	}
	inf, err := NewInformers(client, "me", 0, p)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{}, 2)
	go func() { inf.Run(ctx); stopped <- struct{}{} }()
	go func() { _ = p.Run(ctx); stopped <- struct{}{} }()
	defer func() { cancel(); <-stopped; <-stopped }()

	// get fetches url from inside the namespace: the body, or the error.
	get := func(url string) (string, error) {
		var body string
		err := inNS(ns, func() error {
			// Dial here, on the namespaced thread.
			conn, err := net.DialTimeout("tcp", url, time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
				return err
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			body = string(b)
			return err
		})
		return body, err
	}
	waitSync := func() {
		t.Helper()
		select {
		case err := <-dp.done:
			if err != nil {
				t.Fatalf("sync: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("no sync within 2s")
		}
	}
	waitSync() // the initial, empty sync

	svc := service("web", "10.96.0.50", v1.ProtocolTCP)
	svc.Spec.Type = v1.ServiceTypeNodePort
	svc.Spec.Ports[0].NodePort = 30080
	empty := service("empty", "10.96.0.51", v1.ProtocolTCP)
	if _, err := client.CoreV1().Services("ns").Create(ctx, empty, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Services("ns").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice := endpointSlice("web", v1.ProtocolTCP, "me", "10.99.0.20")
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually := func(url, want string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			got, err := get(url)
			if err == nil && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s = %q, %v; want %q", url, got, err, want)
			}
			select {
			case err := <-dp.done:
				if err != nil {
					t.Fatalf("sync: %v", err)
				}
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	eventually("10.96.0.50:80", "10.99.0.20")
	eventually("10.99.0.5:30080", "10.99.0.20")

	// No endpoints: rejected at once, never blackholed.
	start := time.Now()
	if _, err := get("10.96.0.51:80"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("service without endpoints: err = %v, want connection refused", err)
	} else if time.Since(start) > 500*time.Millisecond {
		t.Errorf("reject took %s", time.Since(start))
	}

	// Moving the endpoint moves the traffic.
	slice.Endpoints[0].Addresses = []string{"10.99.0.21"}
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("10.96.0.50:80", "10.99.0.21")
}
