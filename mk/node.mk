# The node environment (containerd + runc + CNI under one state dir), the local images and
# registry, and `make up` / `make down` for a development node on this machine.

TEST_TARGETS += test-nodeenv

.PHONY: test-nodeenv up down

bin/kubenode-dev: FORCE
	$(GO) build -trimpath -o $@ ./e2e/cmd/kubenode-dev

test-nodeenv: controlplane ## images, registry, pods over CRI on containerd+CNI, crash teardown, make up/down (root)
	$(GO) test -count=1 -timeout=5m ./e2e/images/... ./e2e/nodeenv/... ./e2e/cmd/kubenode-dev/...

up: deps build controlplane bin/kubenode-dev ## start a dev node (registry, control plane, containerd, our kubelet + kube-proxy, echo demo) in the background under $KUBENODE_STATE
	bin/kubenode-dev up

down: bin/kubenode-dev ## stop the dev node and remove all it made (idempotent, works after a crash)
	bin/kubenode-dev down
