package charts

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/kubenode/kubenode/e2e/cluster"
	"github.com/kubenode/kubenode/e2e/images"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// The kube-proxy the chart installs starts from what the chart installed: the image's binary, the
// DaemonSet's command line and the ConfigMap's file, as the ServiceAccount the chart binds. It
// runs in a throwaway network namespace (it programs nftables there) and must report a completed
// sync on /healthz, which needs every list and watch its RBAC allows to succeed.
func TestKubeProxyRunsAsInstalled(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a network namespace and nftables for kube-proxy)")
	}
	imagesDir := os.Getenv("KUBENODE_IMAGES_DIR")
	if imagesDir == "" {
		t.Skip("KUBENODE_IMAGES_DIR not set: run through make test-charts (it runs make images)")
	}
	h := newHelm(t)
	bin := os.Getenv(cluster.BinaryEnv)
	if bin == "" {
		t.Skip(cluster.BinaryEnv + " not set: run through make test-charts (it builds the control plane with make controlplane)")
	}
	work := t.TempDir()
	c, err := cluster.Start(context.Background(), cluster.Options{Binary: bin, StateDir: filepath.Join(work, "controlplane")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Logf("control plane stop: %v", err)
		}
	})
	cs, _, err := c.Client(c.AdminKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	h.mustRun(t, "install", "kube-proxy", chartDir(t, "kube-proxy"), "--namespace", kubeSystem, "--kubeconfig", c.AdminKubeconfig(),
		"--set", "config.clusterCIDR=10.244.0.0/16")
	ds, err := cs.AppsV1().DaemonSets(kubeSystem).Get(ctx, "kube-proxy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := cs.CoreV1().ConfigMaps(kubeSystem).Get(ctx, "kube-proxy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Outside a pod there is no projected token: ask for the ServiceAccount's token and hand it over
	// in a kubeconfig (the flag wins over the file's in-cluster default).
	pod := ds.Spec.Template.Spec
	tok, err := cs.CoreV1().ServiceAccounts(kubeSystem).CreateToken(ctx, pod.ServiceAccountName, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptrTo(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for ServiceAccount %s: %v", pod.ServiceAccountName, err)
	}
	kubeconfig := filepath.Join(work, "kube-proxy.kubeconfig")
	writeFile(t, kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, c.Server(), c.CACertFile(), tok.Status.Token))

	const nodeName = "chart-node"
	createNode(t, cs, nodeName, "10.250.0.1")

	// The DaemonSet's command, with the image's binary, the ConfigMap's file where the pod mounts it,
	// and the node name the downward API gives.
	configDir := filepath.Join(work, "etc-kube-proxy")
	if err := os.MkdirAll(configDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range cm.Data {
		writeFile(t, filepath.Join(configDir, k), v)
	}
	exe := extractBinary(t, filepath.Join(imagesDir, "kube-proxy.tar"), images.KubeProxyPath, work)
	container := pod.Containers[0]
	if container.Command[0] != images.KubeProxyPath {
		t.Fatalf("DaemonSet runs %s, the image has %s", container.Command[0], images.KubeProxyPath)
	}
	var args []string
	for _, a := range container.Command[1:] {
		a = strings.ReplaceAll(a, "$(NODE_NAME)", nodeName)
		a = strings.ReplaceAll(a, "/etc/kube-proxy/", configDir+"/")
		args = append(args, a)
	}
	args = append(args, "--kubeconfig="+kubeconfig)

	ns := anonNS(t)
	relay := newRelay(t, ns, hostPortOf(t, c.Server()))
	defer relay.Close()
	logPath := filepath.Join(work, "kube-proxy.log")
	stop := startInNS(t, ns, exe, args, logPath)
	defer stop()

	start := time.Now()
	port := container.LivenessProbe.HTTPGet.Port.IntValue()
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		code, body, err := getInNS(ns, fmt.Sprintf("127.0.0.1:%d", port), container.LivenessProbe.HTTPGet.Path)
		last = fmt.Sprintf("%d %s %v", code, body, err)
		if err == nil && code == http.StatusOK {
			var st struct {
				LastUpdated time.Time `json:"lastUpdated"`
			}
			if json.Unmarshal([]byte(body), &st) == nil && st.LastUpdated.After(start.Add(-time.Second)) {
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	logData, _ := os.ReadFile(logPath)
	t.Fatalf("kube-proxy as installed never reported a sync on its liveness probe (last: %s); log:\n%s", last, logData)
}

func ptrTo[T any](v T) *T { return &v }

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func hostPortOf(t *testing.T, server string) string {
	t.Helper()
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// createNode registers a Node with one InternalIP, as a kubelet would; kube-proxy reads it.
func createNode(t *testing.T, cs kubernetes.Interface, name, ip string) {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	// The node lifecycle controller writes new Nodes too.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("node %s status: %v", name, err)
	}
}

// extractBinary writes the file at path in the image tarball to dir and returns where.
func extractBinary(t *testing.T, tarballPath, path, dir string) string {
	t.Helper()
	img, err := tarball.ImageFromPath(tarballPath, nil)
	if err != nil {
		t.Fatalf("%s: %v", tarballPath, err)
	}
	data, ok := imageFiles(t, img)[strings.TrimPrefix(path, "/")]
	if !ok || data == nil {
		t.Fatalf("%s has no file %s", tarballPath, path)
	}
	exe := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

// onFreshThread runs fn on a goroutine locked to its thread and never unlocked, so a thread whose
// network namespace fn changed is thrown away rather than reused.
func onFreshThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- fn()
	}()
	return <-errc
}

func inNS(ns netns.NsHandle, fn func() error) error {
	return onFreshThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter netns: %w", err)
		}
		return fn()
	})
}

// anonNS makes an unnamed network namespace with loopback up; it disappears when its handle is
// closed at test end and nothing runs in it any more.
func anonNS(t *testing.T) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	err := onFreshThread(func() error {
		var err error
		ns, err = netns.New()
		if err != nil {
			return err
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	if err != nil {
		t.Fatalf("network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// relay listens on addr inside ns and forwards to addr on the host's loopback, so the API
// server's kubeconfig works unchanged inside the namespace.
type relay struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newRelay(t *testing.T, ns netns.NsHandle, addr string) *relay {
	t.Helper()
	r := &relay{}
	if err := inNS(ns, func() error {
		var err error
		r.ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("relay on %s in the namespace: %v", addr, err)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			in, err := r.ln.Accept()
			if err != nil {
				return
			}
			// Not locked: this goroutine's thread is in the host namespace.
			out, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, in, out)
			r.mu.Unlock()
			r.wg.Add(2)
			go r.pipe(in, out)
			go r.pipe(out, in)
		}
	}()
	return r
}

func (r *relay) pipe(dst, src net.Conn) {
	defer r.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

func (r *relay) Close() {
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// startInNS runs exe in ns (forked from a thread inside it) and returns a function that stops it
// and waits for it.
func startInNS(t *testing.T, ns netns.NsHandle, exe string, args []string, logPath string) func() {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// No Pdeathsig: it fires when the forking thread exits, and that thread is thrown away at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := inNS(ns, cmd.Start); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", exe, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// getInNS does one HTTP/1.0 GET of path on addr from inside ns. The connection is dialled on the
// namespace's thread itself: http.Transport would dial on another goroutine, outside ns.
func getInNS(ns netns.NsHandle, addr, path string) (int, string, error) {
	var code int
	var body []byte
	err := inNS(ns, func() error {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		code = resp.StatusCode
		body, err = io.ReadAll(resp.Body)
		return err
	})
	return code, string(body), err
}
