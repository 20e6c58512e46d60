package charts

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/kubenode/kubenode/e2e/images"
	"github.com/kubenode/kubenode/e2e/netnstest"
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
	work := t.TempDir()
	c, cs := startControlPlane(t, work)
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

	ns := netnstest.New(t)
	netnstest.NewRelay(t, ns, hostPortOf(t, c.Server()))
	logPath := filepath.Join(work, "kube-proxy.log")
	stop := startInNS(t, ns, exe, args, logPath)
	defer stop()

	start := time.Now()
	port := container.LivenessProbe.HTTPGet.Port.IntValue()
	client := netnstest.NewClient(ns, 2*time.Second)
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		code, body, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, container.LivenessProbe.HTTPGet.Path))
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
	if err := netnstest.Start(ns, cmd); err != nil {
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
