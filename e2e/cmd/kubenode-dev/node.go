package main

// The node's own processes (kubelet, kube-proxy) and what up and down do around them. This file
// is the extension point: fill in the three functions; supervise, up and down need no change.

import (
	"context"

	"go.uber.org/zap"
)

// nodeName is the development node's name in the API.
const nodeName = "kubenode-dev"

// nodeFacts is what the node's processes need to know about the running environment.
type nodeFacts struct {
	NodeName            string
	AdminKubeconfig     string
	NodeKubeconfig      string // system:node:<NodeName>
	KubeProxyKubeconfig string
	ClientCAFile        string // the cluster CA: authenticates the API server's client cert at :10250
	CRIEndpoint         string // unix://.../containerd.sock
	PodCIDR             string // the CNI bridge's range
	CgroupRoot          string // pods go below it; down removes the tree
	StateDir            string // a directory of their own for the processes, under the node dir
	BinDir              string // absolute; holds kubelet and kube-proxy
}

// nodeProcesses lists the processes the supervisor keeps running (restarted on exit, stopped
// with SIGTERM before containerd, output in logs/<Name>.log): one procSpec each for
// bin/kubelet and bin/kube-proxy, built from f.
func nodeProcesses(f nodeFacts) []procSpec {
	return agentProcesses(f)
}

// waitNode runs once the node processes have started, before up reports ready: the place to
// wait for the Node to be Ready and to deploy demo workloads.
func waitNode(ctx context.Context, f nodeFacts, log *zap.Logger) error {
	return readyNodeAndDemo(ctx, f, log)
}

// cleanupNode runs in down after the supervisor is stopped (or found dead) and before the
// control plane and node environment are torn down, e.g. for `kube-proxy cleanup`. It must be
// idempotent and work when nothing is up.
func cleanupNode(ctx context.Context, o options, log *zap.Logger) error {
	return kubeProxyCleanup(ctx, o.binDir, log)
}
