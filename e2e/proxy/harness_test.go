// Package proxy holds kube-proxy's end-to-end tests against the local control plane (e2e/cluster).
//
// The nftables test runs the real bin/kube-proxy as a process inside a throwaway "node" network
// namespace, so its nftables table, its healthz and metrics ports and the traffic the test sends
// never touch the host. The control plane listens on the host's loopback only; a relay in the
// test process makes that same 127.0.0.1:PORT reachable inside the node namespace, so kube-proxy
// runs with the ordinary kube-proxy kubeconfig and cutting the relay cuts the node off.
package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/kubenode/kubenode/e2e/cluster"
	"github.com/kubenode/kubenode/e2e/netnstest"
)

// Environment variables the make target sets.
const (
	kubeProxyBinEnv = "KUBENODE_KUBEPROXY_BIN"
	cpBinEnv        = cluster.BinaryEnv
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
}

func binFromEnv(t *testing.T, env string) string {
	t.Helper()
	b := os.Getenv(env)
	if b == "" {
		t.Skipf("%s not set: run through make test-e2e-proxy (it builds bin/kube-proxy and the control plane)", env)
	}
	abs, err := filepath.Abs(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	return abs
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startControlPlane runs a control plane for this test and returns it with an admin client.
func startControlPlane(t *testing.T, stateDir string) (*cluster.Cluster, kubernetes.Interface) {
	t.Helper()
	cpBin := binFromEnv(t, cpBinEnv)
	c, err := cluster.Start(context.Background(), cluster.Options{Binary: cpBin, StateDir: filepath.Join(stateDir, "controlplane")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Logf("control plane stop: %v", err)
		}
	})
	admin, _, err := c.Client(c.AdminKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	return c, admin
}

// process is a kube-proxy run as a child.
type process struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	err     error
}

// startKubeProxy runs bin/kube-proxy inside ns; it is stopped when the test ends and its log
// is printed if the test failed.
func startKubeProxy(t *testing.T, ns netns.NsHandle, logPath string, args ...string) *process {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binFromEnv(t, kubeProxyBinEnv), args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := netnstest.Start(ns, cmd); err != nil {
		f.Close()
		t.Fatalf("start kube-proxy: %v", err)
	}
	p := &process{cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			p.dumpLog(t)
		}
	})
	return p
}

func sysProcAttrPgid() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *process) stop(t *testing.T) {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Errorf("kube-proxy ignored SIGTERM for 15s; killing it")
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

func (p *process) dumpLog(t *testing.T) {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	t.Logf("kube-proxy log (tail):\n%s", strings.Join(lines, "\n"))
}

// eventually polls cond every interval until it returns nil or timeout passes.
func eventually(t *testing.T, timeout, interval time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(interval)
	}
}

// hostPort returns the host:port of a server URL.
func hostPort(t *testing.T, server string) string {
	t.Helper()
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("server URL %q: %v", server, err)
	}
	return u.Host
}

// createNode registers a Node object (as admin) with one InternalIP, as a kubelet would; kube-proxy
// reads it for the node's addresses.
func createNode(t *testing.T, admin kubernetes.Interface, name, ip string) {
	t.Helper()
	ctx := context.Background()
	if _, err := admin.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	// The node lifecycle controller writes the new Node too.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: ip}, {Type: v1.NodeHostName, Address: name}}
		_, err = admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("node %s status: %v", name, err)
	}
}

func namespace(t *testing.T, admin kubernetes.Interface, prefix string) string {
	t.Helper()
	ns := prefix + "-" + randomHex(t, 3)
	if _, err := admin.CoreV1().Namespaces().Create(context.Background(), &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns
}

func ptr[T any](v T) *T { return &v }
