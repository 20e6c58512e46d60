# kube-proxy end to end against the local control plane (root; ~70 s warm, plus the builds):
#  - bin/kube-proxy (nftables) in a throwaway node network namespace with pods as namespaces
#    behind veths: programming within 1 s, NodePort, healthz/metrics, endpoint removal,
#    reject without endpoints, API server outage, `kube-proxy cleanup`;
#  - kube-proxy's core with the IPVS backend over its in-memory kernel (kubeproxy/proxytest);
#  - bin/kubelet + bin/kube-proxy on the host with an echo Deployment behind a Service;
#  - kubenode-dev up (with the demo) and down leaving nothing.
# The last two use the host's nftables table "kubenode": they refuse to run beside `make up`.

TEST_TARGETS += test-e2e-proxy

.PHONY: test-e2e-proxy

test-e2e-proxy: controlplane build ## kube-proxy e2e: nftables in a node netns, IPVS core, kubelet+kube-proxy Service, make up demo (root)
	KUBENODE_KUBEPROXY_BIN=$(abspath bin/kube-proxy) KUBENODE_KUBELET_BIN=$(abspath bin/kubelet) \
		$(GO) test -count=1 -p 1 -timeout=15m ./e2e/proxy/...
