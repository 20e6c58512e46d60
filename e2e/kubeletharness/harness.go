// Package kubeletharness runs one node for end-to-end tests: images and their registry,
// containerd + CNI (e2e/nodeenv), the local control plane (e2e/cluster) and the kubelet binary
// as a process joined to it, all torn down when the test ends. Suites that need a kubelet with
// an API server (e2e/kubeletserver, and others that want it) start one with Start.
package kubeletharness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
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

// Environment variables the make targets set.
const (
	KubeletBinEnv = "KUBENODE_KUBELET_BIN"
	CPBinEnv      = "KUBENODE_CONTROLPLANE_BIN"
)

// Node is a running kubelet joined to its own control plane.
type Node struct {
	Name     string
	StateDir string
	RootDir  string // the kubelet's --root-dir
	NodeIP   string // the address the node registers and the API server reaches it on
	Port     int    // the kubelet API server's port
	Cluster  *cluster.Cluster
	Admin    kubernetes.Interface
	AdminCfg *rest.Config

	kubelet *Kubelet
}

// RandomHex returns n random bytes as hex, for unique names.
func RandomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func freePort(t *testing.T) int {
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// SkipWithoutNode skips the test unless it runs as root with containerd, runc, the CNI plugins
// and busybox installed: what every kubelet node stands on.
func SkipWithoutNode(t *testing.T) {
	t.Helper()
	if why := nodeenv.MissingPrerequisite(); why != "" {
		t.Skip(why)
	}
}

// TestLogger is a no-op logger, or a development one under go test -v.
func TestLogger() *zap.Logger {
	if testing.Verbose() {
		if l, err := zap.NewDevelopment(); err == nil {
			return l
		}
	}
	return zap.NewNop()
}

// StartRuntime builds the test images, serves them from a local registry and starts containerd +
// CNI (e2e/nodeenv) in stateDir/node, with a random /24 of podNet (like "10.246", so parallel
// suites' bridges do not collide) and the kubelet's cgroupRoot. It registers their teardown with
// t.Cleanup first, so whatever the caller registers afterwards (the kubelet, the control plane)
// is stopped before containerd removes every pod, mount, link and cgroup it made. It returns
// containerd and the registry's host:port.
func StartRuntime(t *testing.T, stateDir, podNet, cgroupRoot string, log *zap.Logger) (*nodeenv.Env, string) {
	t.Helper()
	ctx := context.Background()
	imgs, err := images.Build(ctx, images.Options{CacheDir: ImageCacheDir(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := images.Serve(ctx, "", imgs, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	t.Cleanup(func() {
		if err := nodeenv.Teardown(context.Background(), filepath.Join(stateDir, "node"), log); err != nil {
			t.Errorf("node teardown: %v", err)
		}
	})
	octet, _ := rand.Int(rand.Reader, big.NewInt(200))
	env, err := nodeenv.Start(ctx, nodeenv.Options{
		StateDir: filepath.Join(stateDir, "node"), RegistryAddr: reg.Addr(),
		PodCIDR: fmt.Sprintf("%s.%d.0/24", podNet, octet.Int64()+20), CgroupRoots: []string{cgroupRoot}, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return env, reg.Addr()
}

// Start brings up images, registry, containerd, the control plane and the kubelet with its API
// server on a free port (x509 authentication with the cluster CA, TokenReview, SubjectAccessReview)
// and waits for the node to be Ready. tweak may change the kubelet configuration (JSON field
// names). Everything is torn down when the test ends. It skips without root, the node packages,
// or the binaries named by KubeletBinEnv and CPBinEnv.
func Start(t *testing.T, tweak func(cfg map[string]any)) *Node {
	t.Helper()
	SkipWithoutNode(t)
	bin, cpBin := os.Getenv(KubeletBinEnv), os.Getenv(CPBinEnv)
	if bin == "" || cpBin == "" {
		t.Skipf("%s and %s not set: run through make test-e2e-kubeletserver (it builds both)", KubeletBinEnv, CPBinEnv)
	}
	bin, _ = filepath.Abs(bin)
	ctx := context.Background()
	log := TestLogger()
	id := RandomHex(t, 4)
	sd, err := os.MkdirTemp("", "kubenode-test-kubeletserver-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(sd); err != nil {
			t.Errorf("remove state dir: %v", err)
		}
	})
	n := &Node{Name: "e2e-srv-" + id, StateDir: sd, RootDir: filepath.Join(sd, "kubelet"), NodeIP: nodeenv.HostIP(), Port: freePort(t)}
	cgroupRoot := "/kubenode-test-" + id
	env, _ := StartRuntime(t, sd, "10.246", cgroupRoot, log)
	t.Cleanup(func() {
		// The kubelet first (or it recreates what is being removed), then the control plane;
		// StartRuntime's cleanup removes containerd's part after these.
		n.stop()
		if t.Failed() {
			t.Logf("kubelet log (tail):\n%s", LogTail(filepath.Join(sd, "kubelet.log"), 60))
		}
		if n.Cluster != nil {
			if err := n.Cluster.Stop(); err != nil {
				t.Logf("control plane stop: %v", err)
			}
		}
	})
	c, err := cluster.Start(ctx, cluster.Options{Binary: cpBin, StateDir: filepath.Join(sd, "controlplane")})
	if err != nil {
		t.Fatal(err)
	}
	n.Cluster = c
	n.Admin, n.AdminCfg, err = c.Client(c.AdminKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := c.NodeKubeconfig(n.Name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := BaseConfig(env.Endpoint(), cgroupRoot)
	for k, v := range map[string]any{
		"runtimeRequestTimeout":     "30s",
		"syncFrequency":             "10s",
		"healthzPort":               0,
		"port":                      n.Port,
		"nodeStatusUpdateFrequency": "2s",
		"crashLoopBackOff":          map[string]any{"initialContainerRestartPeriod": "1s", "maxContainerRestartPeriod": "2s"},
		"authentication": map[string]any{
			"x509":    map[string]any{"clientCAFile": c.CACertFile()},
			"webhook": map[string]any{"enabled": true, "cacheTTL": "10s"},
		},
		"authorization": map[string]any{"mode": "Webhook", "webhook": map[string]any{"cacheAuthorizedTTL": "10s", "cacheUnauthorizedTTL": "1s"}},
	} {
		cfg[k] = v
	}
	if tweak != nil {
		tweak(cfg)
	}
	cfgFile := filepath.Join(sd, "kubelet.json")
	if err := WriteConfig(cfgFile, cfg); err != nil {
		t.Fatal(err)
	}
	n.kubelet, err = StartKubelet(bin, KubeletArgs(cfgFile, n.RootDir, n.Name, n.NodeIP, kubeconfig), filepath.Join(sd, "kubelet.log"))
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, 60*time.Second, "node "+n.Name+" Ready", func() error {
		nd, err := n.Admin.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
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

// stop stops the kubelet; its pods keep running until teardown.
func (n *Node) stop() {
	if n.kubelet == nil {
		return
	}
	n.kubelet.Stop()
	n.kubelet = nil
}

// Eventually polls cond until it returns nil, failing the test after timeout.
func Eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
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

// Namespace makes a namespace named prefix-<random> and waits for its default service account.
func (n *Node) Namespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	ns := name + "-" + RandomHex(t, 3)
	if _, err := n.Admin.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 30*time.Second, "default service account in "+ns, func() error {
		_, err := n.Admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	return ns
}

// RunPod creates a busybox pod (container "main" running script with sh -c) bound to the node
// and waits until it runs.
func (n *Node) RunPod(t *testing.T, ns, name, script string) *v1.Pod {
	t.Helper()
	return n.RunSpec(t, ns, name, v1.PodSpec{
		Containers: []v1.Container{{Name: "main", Image: images.Busybox, ImagePullPolicy: v1.PullIfNotPresent, Command: []string{"sh", "-c", script}}},
	})
}

// RunSpec creates a pod with spec bound to the node and waits until it runs.
func (n *Node) RunSpec(t *testing.T, ns, name string, spec v1.PodSpec) *v1.Pod {
	t.Helper()
	ctx := context.Background()
	grace := int64(2)
	spec.NodeName, spec.TerminationGracePeriodSeconds = n.Name, &grace
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
	if _, err := n.Admin.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var out *v1.Pod
	Eventually(t, 90*time.Second, "pod "+ns+"/"+name+" running", func() error {
		got, err := n.Admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
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
