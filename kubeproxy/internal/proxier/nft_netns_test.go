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
	discovery "k8s.io/api/discovery/v1"
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

// netnsCore is the whole core (fake API -> informers -> trackers -> plan ->
// runner) with the real nftables backend in a throwaway network namespace.
// The node is 10.99.0.5; endpoint addresses serve HTTP on :8080, answering
// with their own address; all live on lo, and the service range is routed
// to lo so the nat output hook sees the traffic.
type netnsCore struct {
	t      *testing.T
	ns     netns.NsHandle
	client *fake.Clientset
	dp     signalingDataplane
}

func startNetnsCore(t *testing.T, node *v1.Node, endpoints ...string) *netnsCore {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
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
	t.Cleanup(func() { ns.Close() })

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
		for _, ip := range append([]string{"10.99.0.5"}, endpoints...) {
			addr, _ := netlink.ParseAddr(ip + "/32")
			if err := h.AddrAdd(lo, addr); err != nil {
				return fmt.Errorf("adding %s: %w", ip, err)
			}
		}
		_, dst, _ := net.ParseCIDR("10.96.0.0/12")
		return h.RouteAdd(&netlink.Route{LinkIndex: lo.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK})
	}); err != nil {
		t.Fatalf("setting up the namespace: %v", err)
	}
	for _, ep := range endpoints {
		var ln net.Listener
		if err := inNS(ns, func() (err error) { ln, err = net.Listen("tcp", ep+":8080"); return err }); err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, ep) }), ReadHeaderTimeout: time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close() })
	}

	backend, err := nft.New(nft.Config{Family: plan.IPv4, Table: "kubenode-test-core", NetNSFd: int(ns)}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	c := &netnsCore{t: t, ns: ns, client: fake.NewClientset(node),
		dp: signalingDataplane{Dataplane: backend, done: make(chan error, 100)}}
	p, err := New(zap.NewNop(), Config{NodeName: node.Name, SyncPeriod: time.Hour}, Deps{Dataplanes: map[plan.Family]Dataplane{plan.IPv4: c.dp}})
	if err != nil {
		t.Fatal(err)
	}
	inf, err := NewInformers(c.client, node.Name, 0, p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{}, 2)
	go func() { inf.Run(ctx); stopped <- struct{}{} }()
	go func() { _ = p.Run(ctx); stopped <- struct{}{} }()
	// Cleanups run last-in first-out: stop the runner, then remove the table.
	t.Cleanup(func() {
		if err := backend.Cleanup(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); <-stopped; <-stopped })
	c.waitSync() // the initial, empty sync
	return c
}

// get fetches url from inside the namespace: the body, or the error.
func (c *netnsCore) get(url string) (string, error) {
	var body string
	err := inNS(c.ns, func() error {
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

func (c *netnsCore) waitSync() {
	c.t.Helper()
	select {
	case err := <-c.dp.done:
		if err != nil {
			c.t.Fatalf("sync: %v", err)
		}
	case <-time.After(2 * time.Second):
		c.t.Fatal("no sync within 2s")
	}
}

// eventually waits (3s at most) until check accepts what GET url returns,
// checking again after each sync and every 50ms.
func (c *netnsCore) eventually(url string, check func(body string, err error) bool, want string) {
	c.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got, err := c.get(url)
		if check(got, err) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("GET %s = %q, %v; want %s", url, got, err, want)
		}
		select {
		case err := <-c.dp.done:
			if err != nil {
				c.t.Fatalf("sync: %v", err)
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *netnsCore) eventuallyBody(url, want string) {
	c.t.Helper()
	c.eventually(url, func(body string, err error) bool { return err == nil && body == want }, fmt.Sprintf("%q", want))
}

// TestCoreWithNftablesInNetns sends traffic through the rules the whole
// core programs.
func TestCoreWithNftablesInNetns(t *testing.T) {
	c := startNetnsCore(t, &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "me"},
		Status:     v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.99.0.5"}}},
	}, "10.99.0.20", "10.99.0.21")
	ctx := context.Background()
	svc := service("web", "10.96.0.50", v1.ProtocolTCP)
	svc.Spec.Type = v1.ServiceTypeNodePort
	svc.Spec.Ports[0].NodePort = 30080
	empty := service("empty", "10.96.0.51", v1.ProtocolTCP)
	if _, err := c.client.CoreV1().Services("ns").Create(ctx, empty, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.client.CoreV1().Services("ns").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice := endpointSlice("web", v1.ProtocolTCP, "me", "10.99.0.20")
	if _, err := c.client.DiscoveryV1().EndpointSlices("ns").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.eventuallyBody("10.96.0.50:80", "10.99.0.20")
	c.eventuallyBody("10.99.0.5:30080", "10.99.0.20")

	// No endpoints: rejected at once, never blackholed.
	start := time.Now()
	if _, err := c.get("10.96.0.51:80"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("service without endpoints: err = %v, want connection refused", err)
	} else if time.Since(start) > 500*time.Millisecond {
		t.Errorf("reject took %s", time.Since(start))
	}

	// Moving the endpoint moves the traffic.
	slice.Endpoints[0].Addresses = []string{"10.99.0.21"}
	if _, err := c.client.DiscoveryV1().EndpointSlices("ns").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.eventuallyBody("10.96.0.50:80", "10.99.0.21")
}

// TestTopologyWithNftablesInNetns: with zone hints on every endpoint, only
// the endpoints hinted for the node's zone get traffic; the node moving
// zone moves the traffic; an endpoint losing its hint spreads it again.
func TestTopologyWithNftablesInNetns(t *testing.T) {
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "me", Labels: map[string]string{v1.LabelTopologyZone: "z1"}},
		Status:     v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.99.0.5"}}},
	}
	c := startNetnsCore(t, node, "10.99.0.20", "10.99.0.21", "10.99.0.22")
	ctx := context.Background()
	svc := service("web", "10.96.0.50", v1.ProtocolTCP)
	svc.Spec.Type = v1.ServiceTypeNodePort
	svc.Spec.Ports[0].NodePort = 30080
	if _, err := c.client.CoreV1().Services("ns").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice := endpointSlice("web", v1.ProtocolTCP, "other", "10.99.0.20", "10.99.0.21", "10.99.0.22")
	for i, zone := range []string{"z1", "z2", "z1"} {
		slice.Endpoints[i].Zone = ptr(zone)
		slice.Endpoints[i].Hints = &discovery.EndpointHints{ForZones: []discovery.ForZone{{Name: zone}}}
	}
	if _, err := c.client.DiscoveryV1().EndpointSlices("ns").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// answering collects who answers 40 new connections (random choice per
	// connection: missing one of two endpoints has odds 2^-39).
	answering := func(url string) (map[string]int, error) {
		seen := map[string]int{}
		for range 40 {
			body, err := c.get(url)
			if err != nil {
				return seen, err
			}
			seen[body]++
		}
		return seen, nil
	}
	expect := func(url string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			seen, err := answering(url)
			ok := err == nil && len(seen) == len(want)
			for _, w := range want {
				ok = ok && seen[w] > 0
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s answered by %v (err %v), want exactly %v", url, seen, err, want)
			}
			select {
			case err := <-c.dp.done:
				if err != nil {
					t.Fatalf("sync: %v", err)
				}
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	expect("10.96.0.50:80", "10.99.0.20", "10.99.0.22")
	expect("10.99.0.5:30080", "10.99.0.20", "10.99.0.22")

	node.Labels[v1.LabelTopologyZone] = "z2"
	if _, err := c.client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("10.96.0.50:80", "10.99.0.21")

	slice.Endpoints[2].Hints = nil
	if _, err := c.client.DiscoveryV1().EndpointSlices("ns").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("10.96.0.50:80", "10.99.0.20", "10.99.0.21", "10.99.0.22")
}
