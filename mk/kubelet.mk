# The kubelet's end-to-end tests: bin/kubelet as a process on real containerd + CNI, with the
# local control plane for the API tests. Root; a few minutes.

TEST_TARGETS += test-e2e-kubelet

.PHONY: test-e2e-kubelet

test-e2e-kubelet: controlplane build ## kubelet e2e: node, pods, status, restarts, static pods, cgroups (root)
	KUBENODE_KUBELET_BIN=$(abspath bin/kubelet) $(GO) test -count=1 -p 1 -timeout=20m ./e2e/kubelet/...
