# kube-proxy end to end: bin/kube-proxy (nftables) against the local control plane inside a
# throwaway node network namespace, with pods as namespaces behind veths. Root; about a minute.

TEST_TARGETS += test-e2e-proxy

.PHONY: test-e2e-proxy

test-e2e-proxy: controlplane build ## kube-proxy e2e: programming latency, NodePort, healthz/metrics, API outage, cleanup (root)
	KUBENODE_KUBEPROXY_BIN=$(abspath bin/kube-proxy) KUBENODE_KUBELET_BIN=$(abspath bin/kubelet) \
		$(GO) test -count=1 -p 1 -timeout=15m ./e2e/proxy/...
