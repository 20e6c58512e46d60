package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/kubenode/kubenode/e2e/nodeenv"
)

// clusterDNS is the Service IP pods are told to use for DNS (the usual kubeadm choice).
const clusterDNS = "10.96.0.10"

// agentProcesses are bin/kubelet and bin/kube-proxy for the dev node, with their state under
// f.StateDir. The kube-proxy runs in nftables mode in the host network namespace, so the host
// reaches Service IPs; its rules live in the inet table "kubenode", which down removes.
// Without both binaries in f.BinDir (make up builds them) the node runs no agents, and up
// lists none.
func agentProcesses(f nodeFacts) []procSpec {
	if !haveAgents(f.BinDir) {
		return nil
	}
	kubeletDir := filepath.Join(f.StateDir, "kubelet")
	manifests := filepath.Join(f.StateDir, "manifests")
	for _, d := range []string{kubeletDir, manifests} {
		// A failure shows in the kubelet's own log, which names the directory.
		_ = os.MkdirAll(d, 0o755)
	}
	return []procSpec{
		{
			Name: "kubelet",
			Path: filepath.Join(f.BinDir, "kubelet"),
			Args: []string{
				"--kubeconfig=" + f.NodeKubeconfig,
				"--hostname-override=" + f.NodeName,
				"--node-ip=" + nodeenv.HostIP(),
				"--root-dir=" + kubeletDir,
				"--container-runtime-endpoint=" + f.CRIEndpoint,
				"--pod-manifest-path=" + manifests,
				"--cgroup-root=" + f.CgroupRoot,
				"--cluster-dns=" + clusterDNS,
				"--cluster-domain=cluster.local",
				// kubectl logs/exec reach :10250 as the API server's kubelet client certificate.
				"--client-ca-file=" + f.ClientCAFile,
				// A dev VM may have swap; pods here do not set memory limits that depend on it.
				"--fail-swap-on=false",
				// Like kind: a dev machine's disk is shared with everything else on it, so its free
				// space does not evict pods or garbage-collect the demo's images.
				"--eviction-hard=memory.available<100Mi",
				"--image-gc-high-threshold=100",
			},
		},
		{
			Name: "kube-proxy",
			Path: filepath.Join(f.BinDir, "kube-proxy"),
			Args: []string{
				"--kubeconfig=" + f.KubeProxyKubeconfig,
				"--hostname-override=" + f.NodeName,
				"--proxy-mode=nftables",
				"--cluster-cidr=" + f.PodCIDR,
			},
		},
	}
}

// haveAgents reports whether binDir holds both node agents.
func haveAgents(binDir string) bool {
	for _, b := range []string{"kubelet", "kube-proxy"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return false
		}
	}
	return true
}

// kubeProxyCleanup runs `kube-proxy cleanup`, which removes every nftables (and IPVS) object a
// kube-proxy made on this host. Without the binary there was no kube-proxy to clean up after.
func kubeProxyCleanup(ctx context.Context, binDir string, log *zap.Logger) error {
	bin, err := filepath.Abs(filepath.Join(binDir, "kube-proxy"))
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		log.Info("no kube-proxy binary, nothing to clean up", zap.String("path", bin))
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var b strings.Builder
	cmd := exec.CommandContext(ctx, bin, "cleanup")
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kube-proxy cleanup: %w\n%s", err, b.String())
	}
	log.Info("kube-proxy cleanup done")
	return nil
}
