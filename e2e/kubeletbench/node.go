package kubeletbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"

	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"

	"github.com/kubenode/kubenode/e2e/cluster"
	"github.com/kubenode/kubenode/e2e/images"
	"github.com/kubenode/kubenode/e2e/kubeletharness"
	"github.com/kubenode/kubenode/e2e/nodeenv"
)

// node is everything a run stands on: local images and registry, containerd (nodeenv), the
// control plane (cluster) and, once started, the kubelet process. close removes all of it.
type node struct {
	name       string
	stateDir   string
	rootDir    string
	cgroupRoot string
	nodeIP     string
	log        *zap.Logger

	reg     *images.Registry
	env     *nodeenv.Env
	cluster *cluster.Cluster
	admin   kubernetes.Interface

	kubelet *kubeletharness.Kubelet // nil until startKubelet
}

// startNode brings up images, registry, containerd and the control plane. On error it removes
// what it made.
func startNode(ctx context.Context, o Options, log *zap.Logger) (n *node, err error) {
	id, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	sd, err := os.MkdirTemp("", "kubenode-bench-kubelet-")
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	n = &node{
		name: "bench-" + id, stateDir: sd, rootDir: filepath.Join(sd, "kubelet"),
		cgroupRoot: "/kubenode-bench-" + id, nodeIP: nodeenv.HostIP(), log: log,
	}
	defer func() {
		if err != nil {
			if cerr := n.close(); cerr != nil {
				log.Warn("cleanup after failed start", zap.Error(cerr))
			}
			n = nil
		}
	}()
	if err := os.MkdirAll(n.rootDir, 0o755); err != nil {
		return n, fmt.Errorf("kubelet root dir: %w", err)
	}

	imgs, err := images.Build(ctx, images.Options{CacheDir: o.ImageCacheDir, Log: log})
	if err != nil {
		return n, fmt.Errorf("build images: %w", err)
	}
	if n.reg, err = images.Serve(ctx, "", imgs, log); err != nil {
		return n, fmt.Errorf("serve images: %w", err)
	}
	// Runs of other tests may hold bridges of their own: pick a range at random.
	octet, err := rand.Int(rand.Reader, big.NewInt(200))
	if err != nil {
		return n, err
	}
	n.env, err = nodeenv.Start(ctx, nodeenv.Options{
		StateDir:     filepath.Join(sd, "node"),
		RegistryAddr: n.reg.Addr(),
		PodCIDR:      fmt.Sprintf("10.246.%d.0/24", octet.Int64()+20),
		CgroupRoots:  []string{n.cgroupRoot},
		// Nothing here makes nftables tables; the default prefix ("kubenode") would delete
		// another node's live tables (a dev node's kube-proxy) at teardown.
		NFTablePrefixes: []string{"kubenode-bench-" + id},
		Log:             log,
	})
	if err != nil {
		return n, fmt.Errorf("containerd: %w", err)
	}
	n.cluster, err = cluster.Start(ctx, cluster.Options{Binary: o.ControlPlaneBin, StateDir: filepath.Join(sd, "controlplane")})
	if err != nil {
		return n, fmt.Errorf("control plane: %w", err)
	}
	_, rc, err := n.cluster.Client(n.cluster.AdminKubeconfig())
	if err != nil {
		return n, err
	}
	// The burst must reach the API server at once, not through client-go's default 5 QPS.
	rc.QPS, rc.Burst = 500, 500
	if n.admin, err = kubernetes.NewForConfig(rc); err != nil {
		return n, fmt.Errorf("admin client: %w", err)
	}
	return n, nil
}

// startKubelet writes the kubelet's config and starts bin/kubelet against containerd and the
// control plane, with its output in <stateDir>/kubelet.log and env added to its environment.
// maxParallelPodStarts is always written, so the paced floor's K is the kubelet's cap.
func (n *node) startKubelet(bin string, maxPods, maxParallelPodStarts, verbosity int, env ...string) error {
	kubeconfig, err := n.cluster.NodeKubeconfig(n.name)
	if err != nil {
		return err
	}
	healthz, err := kubeletharness.FreePort()
	if err != nil {
		return err
	}
	port, err := kubeletharness.FreePort()
	if err != nil {
		return err
	}
	// Defaults wherever they shape steady-state cost (sync, status and lease periods), so the
	// idle figures are what an operator gets; only ports and paths are this run's own.
	cfg := kubeletharness.BaseConfig(n.env.Endpoint(), n.cgroupRoot)
	cfg["healthzBindAddress"], cfg["healthzPort"], cfg["port"] = "127.0.0.1", healthz, port
	cfg["maxPods"] = maxPods
	cfg["maxParallelPodStarts"] = maxParallelPodStarts
	if verbosity > 0 {
		cfg["logging"] = map[string]any{"verbosity": verbosity}
	}
	cfgFile := filepath.Join(n.stateDir, "kubelet.json")
	if err := kubeletharness.WriteConfig(cfgFile, cfg); err != nil {
		return err
	}
	n.kubelet, err = kubeletharness.StartKubelet(bin, kubeletharness.KubeletArgs(cfgFile, n.rootDir, n.name, n.nodeIP, kubeconfig),
		filepath.Join(n.stateDir, "kubelet.log"), env...)
	return err
}

// kubeletAlive reports an error when the kubelet has exited.
func (n *node) kubeletAlive() error {
	select {
	case <-n.kubelet.Exited():
		return fmt.Errorf("the kubelet exited (%v); log tail:\n%s", n.kubelet.Err(), kubeletharness.LogTail(filepath.Join(n.stateDir, "kubelet.log"), 40))
	default:
		return nil
	}
}

// stopKubelet stops the kubelet (SIGTERM, then SIGKILL of its group); pods keep running.
func (n *node) stopKubelet() {
	if n.kubelet == nil {
		return
	}
	n.kubelet.Stop()
	n.kubelet = nil
}

// close stops everything in the order that leaves nothing behind: the kubelet first (or it
// recreates what is being removed), the control plane, then containerd with every pod, mount,
// link and cgroup of the node, then the registry and the state directory.
func (n *node) close() error {
	var errs []error
	n.stopKubelet()
	if n.cluster != nil {
		if err := n.cluster.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("control plane stop: %w", err))
		}
	}
	if err := nodeenv.Teardown(context.Background(), filepath.Join(n.stateDir, "node"), n.log); err != nil {
		errs = append(errs, fmt.Errorf("node teardown: %w", err))
	}
	if n.reg != nil {
		if err := n.reg.Close(); err != nil {
			errs = append(errs, fmt.Errorf("registry: %w", err))
		}
	}
	if err := os.RemoveAll(n.stateDir); err != nil {
		errs = append(errs, fmt.Errorf("remove state dir: %w", err))
	}
	return errors.Join(errs...)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
