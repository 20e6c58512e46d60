// Package kubelet holds the kubelet's end-to-end tests: the real kubelet binary as a process,
// against real containerd + runc + CNI (e2e/nodeenv), local images (e2e/images) and, for the
// tests that need an API server, the local control plane (e2e/cluster).
package kubelet

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubenode/kubenode/e2e/cluster"
	"github.com/kubenode/kubenode/e2e/images"
	"github.com/kubenode/kubenode/e2e/kubeletharness"
	"github.com/kubenode/kubenode/e2e/nodeenv"
)

// Environment variables the make target sets.
const (
	kubeletBinEnv = "KUBENODE_KUBELET_BIN"
	cpBinEnv      = "KUBENODE_CONTROLPLANE_BIN"
)

// node is one kubelet under test with everything it runs on.
type node struct {
	name       string
	stateDir   string
	rootDir    string
	staticDir  string
	cgroupRoot string
	configFile string
	kubeconfig string // empty: standalone
	nodeIP     string
	healthz    int
	registry   string // host:port of the local registry
	env        *nodeenv.Env
	cluster    *cluster.Cluster
	admin      kubernetes.Interface
	log        *zap.Logger

	kubelet *kubeletharness.Kubelet // nil while stopped
}

func kubeletBin(t *testing.T) string {
	t.Helper()
	b := os.Getenv(kubeletBinEnv)
	if b == "" {
		t.Skipf("%s not set: run through make test-e2e-kubelet (it builds bin/kubelet)", kubeletBinEnv)
	}
	abs, err := filepath.Abs(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("%s: %v", kubeletBinEnv, err)
	}
	return abs
}

func randomHex(t *testing.T, n int) string { return kubeletharness.RandomHex(t, n) }

func freePort(t *testing.T) int {
	p, err := kubeletharness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startNode brings up images, registry, containerd (+ a control plane when withAPI) and the
// kubelet. Everything is torn down when the test ends.
func startNode(t *testing.T, withAPI bool, tweak func(cfg map[string]any)) *node {
	t.Helper()
	kubeletharness.SkipWithoutNode(t)
	bin := kubeletBin(t)
	cpBin := os.Getenv(cpBinEnv)
	if withAPI && cpBin == "" {
		t.Skipf("%s not set: run through make test-e2e-kubelet (it builds the control plane)", cpBinEnv)
	}
	ctx := context.Background()
	log := kubeletharness.TestLogger()
	id := randomHex(t, 4)
	sd, err := os.MkdirTemp("", "kubenode-test-kubelet-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(sd); err != nil {
			t.Errorf("remove state dir: %v", err)
		}
	})
	n := &node{
		name: "e2e-" + id, stateDir: sd, rootDir: filepath.Join(sd, "kubelet"), staticDir: filepath.Join(sd, "manifests"),
		cgroupRoot: "/kubenode-test-" + id, nodeIP: nodeenv.HostIP(), healthz: freePort(t), log: log,
	}
	for _, d := range []string{n.rootDir, n.staticDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env, registry := kubeletharness.StartRuntime(t, sd, "10.247", n.cgroupRoot, log)
	n.env, n.registry = env, registry
	t.Cleanup(func() {
		// Order matters: the kubelet first (or it recreates what is being removed), then the
		// control plane; StartRuntime's cleanup then removes containerd with every pod, mount,
		// link and cgroup it made.
		n.stopKubelet(t)
		if t.Failed() {
			n.dumpLogs(t)
		}
		if dst := os.Getenv("KUBENODE_E2E_KUBELET_LOG"); dst != "" {
			// For debugging: keep the whole kubelet log.
			if b, err := os.ReadFile(filepath.Join(sd, "kubelet.log")); err == nil {
				_ = os.WriteFile(dst, b, 0o644)
			}
		}
		if n.cluster != nil {
			if err := n.cluster.Stop(); err != nil {
				t.Logf("control plane stop: %v", err)
			}
		}
	})

	if withAPI {
		c, err := cluster.Start(ctx, cluster.Options{Binary: cpBin, StateDir: filepath.Join(sd, "controlplane")})
		if err != nil {
			t.Fatal(err)
		}
		n.cluster = c
		admin, _, err := c.Client(c.AdminKubeconfig())
		if err != nil {
			t.Fatal(err)
		}
		n.admin = admin
		n.kubeconfig, err = c.NodeKubeconfig(n.name)
		if err != nil {
			t.Fatal(err)
		}
	}

	cfg := kubeletharness.BaseConfig(env.Endpoint(), n.cgroupRoot)
	for k, v := range map[string]any{
		"runtimeRequestTimeout": "30s",
		"staticPodPath":         n.staticDir,
		"fileCheckFrequency":    "2s",
		"syncFrequency":         "10s",
		"healthzBindAddress":    "127.0.0.1",
		"healthzPort":           n.healthz,
		// A port of its own for the :10250 API, so the suite runs beside a dev node or another kubelet.
		"port":                      freePort(t),
		"nodeStatusUpdateFrequency": "2s",
		"crashLoopBackOff": map[string]any{
			"initialContainerRestartPeriod": "2s",
			"maxContainerRestartPeriod":     "8s",
		},
	} {
		cfg[k] = v
	}
	if tweak != nil {
		tweak(cfg)
	}
	n.configFile = filepath.Join(sd, "kubelet.json")
	if err := kubeletharness.WriteConfig(n.configFile, cfg); err != nil {
		t.Fatal(err)
	}
	n.startKubelet(t, bin)
	return n
}

func (n *node) startKubelet(t *testing.T, bin string) {
	t.Helper()
	k, err := kubeletharness.StartKubelet(bin, kubeletharness.KubeletArgs(n.configFile, n.rootDir, n.name, n.nodeIP, n.kubeconfig),
		filepath.Join(n.stateDir, "kubelet.log"))
	if err != nil {
		t.Fatal(err)
	}
	n.kubelet = k
}

// stopKubelet stops the kubelet process (SIGTERM, then SIGKILL); its pods keep running.
func (n *node) stopKubelet(t *testing.T) {
	if n.kubelet == nil {
		return
	}
	n.kubelet.Stop()
	n.kubelet = nil
}

func (n *node) dumpLogs(t *testing.T) {
	t.Logf("kubelet log (tail):\n%s", kubeletharness.LogTail(filepath.Join(n.stateDir, "kubelet.log"), 150))
}

// eventually polls cond until it returns nil or the timeout passes; it fails at once when the
// kubelet process died.
func (n *node) eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	kubeletharness.Eventually(t, timeout, what, func() error {
		if n.kubelet != nil {
			select {
			case <-n.kubelet.Exited():
				n.dumpLogs(t)
				t.Fatalf("%s: the kubelet exited: %v", what, n.kubelet.Err())
			default:
			}
		}
		return cond()
	})
}

// namespace makes a namespace and waits for its default service account (pods need it).
func (n *node) namespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	ns := name + "-" + randomHex(t, 3)
	if _, err := n.admin.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n.eventually(t, 30*time.Second, "default service account in "+ns, func() error {
		_, err := n.admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	return ns
}

// createPod binds the pod to the node directly (no scheduler in the way) and creates it.
func (n *node) createPod(t *testing.T, p *v1.Pod) *v1.Pod {
	t.Helper()
	p.Spec.NodeName = n.name
	if p.Spec.TerminationGracePeriodSeconds == nil {
		g := int64(5)
		p.Spec.TerminationGracePeriodSeconds = &g
	}
	out, err := n.admin.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (n *node) getPod(t *testing.T, ns, name string) *v1.Pod {
	t.Helper()
	p, err := n.admin.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitPod waits until check accepts the pod.
func (n *node) waitPod(t *testing.T, ns, name string, timeout time.Duration, what string, check func(*v1.Pod) error) *v1.Pod {
	t.Helper()
	var last *v1.Pod
	n.eventually(t, timeout, fmt.Sprintf("pod %s/%s: %s", ns, name, what), func() error {
		p, err := n.admin.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		last = p
		if err := check(p); err != nil {
			return fmt.Errorf("%w (phase %s, statuses %s)", err, p.Status.Phase, brief(p))
		}
		return nil
	})
	return last
}

func (n *node) waitGone(t *testing.T, ns, name string, timeout time.Duration) {
	t.Helper()
	n.eventually(t, timeout, "pod "+ns+"/"+name+" gone", func() error {
		_, err := n.admin.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("still there")
	})
}

func phaseIs(ph v1.PodPhase) func(*v1.Pod) error {
	return func(p *v1.Pod) error {
		if p.Status.Phase != ph {
			return fmt.Errorf("phase %s, want %s", p.Status.Phase, ph)
		}
		return nil
	}
}

func readyPod(p *v1.Pod) error {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady && c.Status == v1.ConditionTrue {
			return nil
		}
	}
	return fmt.Errorf("not Ready")
}

func brief(p *v1.Pod) string {
	var b bytes.Buffer
	for _, cs := range append(append([]v1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		st := "?"
		switch {
		case cs.State.Running != nil:
			st = "running"
		case cs.State.Waiting != nil:
			st = "waiting:" + cs.State.Waiting.Reason
		case cs.State.Terminated != nil:
			st = fmt.Sprintf("terminated:%s(%d)", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		}
		fmt.Fprintf(&b, "%s=%s/r%d ", cs.Name, st, cs.RestartCount)
	}
	if p.Status.Reason != "" {
		fmt.Fprintf(&b, "reason=%s ", p.Status.Reason)
	}
	return strings.TrimSpace(b.String())
}

// containerLog reads a container's CRI log (the kubelet's log dir layout) and returns the text.
func (n *node) containerLog(t *testing.T, p *v1.Pod, container string, attempt int) string {
	t.Helper()
	path := filepath.Join(n.rootDir, "logs", "pods", p.Namespace+"_"+p.Name+"_"+string(p.UID), container, fmt.Sprintf("%d.log", attempt))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("container log: %v", err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		// <time> <stream> <P|F> <text>
		parts := strings.SplitN(line, " ", 4)
		if len(parts) == 4 {
			out = append(out, parts[3])
		}
	}
	return strings.Join(out, "\n")
}

func busybox(name string, args ...string) v1.Container {
	return v1.Container{Name: name, Image: images.Busybox, ImagePullPolicy: v1.PullIfNotPresent, Command: []string{"sh", "-c", strings.Join(args, " ")}}
}

// sleeper stops at once on SIGTERM (sh as PID 1 ignores it otherwise).
const sleeper = "trap 'exit 0' TERM; while true; do sleep 1; done"

func ptr[T any](v T) *T { return &v }
