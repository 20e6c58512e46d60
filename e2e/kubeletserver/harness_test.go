// Package kubeletserver tests the kubelet's :10250 API end to end: the real kubelet binary on
// real containerd + CNI (e2e/nodeenv) with the local control plane (e2e/cluster), reached the way
// users reach it, through the API server's pods/log and pods/exec, and directly.
//
// The node setup follows e2e/kubelet's harness, which lives in test files and cannot be imported.
package kubeletserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubenode/kubenode/e2e/cluster"
	"github.com/kubenode/kubenode/e2e/images"
	"github.com/kubenode/kubenode/e2e/nodeenv"
)

const (
	kubeletBinEnv = "KUBENODE_KUBELET_BIN"
	cpBinEnv      = "KUBENODE_CONTROLPLANE_BIN"
)

type node struct {
	name     string
	stateDir string
	rootDir  string
	nodeIP   string
	port     int
	cluster  *cluster.Cluster
	admin    kubernetes.Interface
	adminCfg *rest.Config

	cmd    *exec.Cmd
	exited chan struct{}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func hostIP() string {
	c, err := net.Dial("udp4", "192.0.2.1:9")
	if err == nil {
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).IP.String()
	}
	return "127.0.0.1"
}

func cacheDir() string {
	if c := os.Getenv("KUBENODE_CACHE"); c != "" {
		return filepath.Join(c, "images")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "kubenode", "images")
}

// startNode brings up images, registry, containerd, the control plane and the kubelet with its
// API server on a free port; everything is torn down when the test ends.
func startNode(t *testing.T, tweak func(cfg map[string]any)) *node {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (containerd, CNI, cgroups)")
	}
	for _, bin := range []string{"containerd", "runc", "/usr/lib/cni/bridge", "/bin/busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s: apt-get install containerd runc containernetworking-plugins busybox-static", bin)
		}
	}
	bin, cpBin := os.Getenv(kubeletBinEnv), os.Getenv(cpBinEnv)
	if bin == "" || cpBin == "" {
		t.Skipf("%s and %s not set: run through make test-e2e-kubeletserver", kubeletBinEnv, cpBinEnv)
	}
	bin, _ = filepath.Abs(bin)
	ctx := context.Background()
	log := zap.NewNop()
	if testing.Verbose() {
		log, _ = zap.NewDevelopment()
	}
	id := randomHex(t, 4)
	sd, err := os.MkdirTemp("", "kubenode-test-kubeletserver-")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{name: "e2e-srv-" + id, stateDir: sd, rootDir: filepath.Join(sd, "kubelet"), nodeIP: hostIP(), port: freePort(t)}
	cgroupRoot := "/kubenode-test-" + id
	imgs, err := images.Build(ctx, images.Options{CacheDir: cacheDir(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := images.Serve(ctx, "", imgs, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	t.Cleanup(func() {
		n.stopKubelet()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(sd, "kubelet.log")); err == nil {
				lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
				if len(lines) > 60 {
					lines = lines[len(lines)-60:]
				}
				t.Logf("kubelet log (tail):\n%s", strings.Join(lines, "\n"))
			}
		}
		if n.cluster != nil {
			if err := n.cluster.Stop(); err != nil {
				t.Logf("control plane stop: %v", err)
			}
		}
		if err := nodeenv.Teardown(context.Background(), filepath.Join(sd, "node"), log); err != nil {
			t.Errorf("node teardown: %v", err)
		}
		if err := os.RemoveAll(sd); err != nil {
			t.Errorf("remove state dir: %v", err)
		}
	})
	octet, _ := rand.Int(rand.Reader, big.NewInt(200))
	env, err := nodeenv.Start(ctx, nodeenv.Options{
		StateDir: filepath.Join(sd, "node"), RegistryAddr: reg.Addr(),
		PodCIDR: fmt.Sprintf("10.246.%d.0/24", octet.Int64()+20), CgroupRoots: []string{cgroupRoot}, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cluster.Start(ctx, cluster.Options{Binary: cpBin, StateDir: filepath.Join(sd, "controlplane")})
	if err != nil {
		t.Fatal(err)
	}
	n.cluster = c
	n.admin, n.adminCfg, err = c.Client(c.AdminKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := c.NodeKubeconfig(n.name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"apiVersion":                "kubelet.config.kubenode.io/v1alpha1",
		"kind":                      "KubeletConfiguration",
		"containerRuntimeEndpoint":  env.Endpoint(),
		"runtimeRequestTimeout":     "30s",
		"syncFrequency":             "10s",
		"healthzPort":               0,
		"port":                      n.port,
		"clusterDNS":                []string{"10.96.0.10"},
		"clusterDomain":             "cluster.local",
		"cgroupRoot":                cgroupRoot,
		"nodeStatusUpdateFrequency": "2s",
		"failSwapOn":                false,
		"crashLoopBackOff":          map[string]any{"initialContainerRestartPeriod": "1s", "maxContainerRestartPeriod": "2s"},
		"authentication": map[string]any{
			"x509":    map[string]any{"clientCAFile": c.CACertFile()},
			"webhook": map[string]any{"enabled": true, "cacheTTL": "10s"},
		},
		"authorization": map[string]any{"mode": "Webhook", "webhook": map[string]any{"cacheAuthorizedTTL": "10s", "cacheUnauthorizedTTL": "1s"}},
	}
	if tweak != nil {
		tweak(cfg)
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	cfgFile := filepath.Join(sd, "kubelet.json")
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(sd, "kubelet.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd := exec.Command(bin, "--config="+cfgFile, "--root-dir="+n.rootDir, "--hostname-override="+n.name,
		"--node-ip="+n.nodeIP, "--kubeconfig="+kubeconfig)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(n.exited) }()
	eventually(t, 60*time.Second, "node "+n.name+" Ready", func() error {
		nd, err := n.admin.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range nd.Status.Conditions {
			if cond.Type == v1.NodeReady && cond.Status == v1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not Ready")
	})
	return n
}

func (n *node) stopKubelet() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.exited
	}
	n.cmd = nil
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// namespace makes a namespace and waits for its default service account.
func (n *node) namespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	ns := name + "-" + randomHex(t, 3)
	if _, err := n.admin.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "default service account in "+ns, func() error {
		_, err := n.admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	return ns
}

// runPod creates a busybox pod bound to the node and waits until it runs.
func (n *node) runPod(t *testing.T, ns, name, script string) *v1.Pod {
	t.Helper()
	return n.runSpec(t, ns, name, v1.PodSpec{
		Containers: []v1.Container{{Name: "main", Image: images.Busybox, ImagePullPolicy: v1.PullIfNotPresent, Command: []string{"sh", "-c", script}}},
	})
}

// runSpec creates a pod bound to the node and waits until it runs.
func (n *node) runSpec(t *testing.T, ns, name string, spec v1.PodSpec) *v1.Pod {
	t.Helper()
	ctx := context.Background()
	grace := int64(2)
	spec.NodeName, spec.TerminationGracePeriodSeconds = n.name, &grace
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
	if _, err := n.admin.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var out *v1.Pod
	eventually(t, 90*time.Second, "pod "+ns+"/"+name+" running", func() error {
		got, err := n.admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.Phase != v1.PodRunning {
			return fmt.Errorf("phase %s", got.Status.Phase)
		}
		out = got
		return nil
	})
	return out
}
