# The kubelet API server's (:10250) end-to-end tests: logs and exec through the API server,
# authentication and authorization of direct requests, /metrics/resource (what metrics-server
# scrapes for kubectl top), /metrics/cadvisor and /configz. Root; about a minute.

TEST_TARGETS += test-e2e-kubeletserver

.PHONY: test-e2e-kubeletserver

test-e2e-kubeletserver: controlplane build ## kubelet API server e2e: pods/log, pods/exec, metrics/resource, configz, 401/403/200 on :10250 (root)
	KUBENODE_KUBELET_BIN=$(abspath bin/kubelet) $(GO) test -count=1 -p 1 -timeout=10m ./e2e/kubeletserver/...
