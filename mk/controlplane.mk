# The local control plane (etcd + kube-apiserver + controllers + scheduler in
# one process) that the e2e suites and `make up` run against. It is built
# from its own module in e2e/controlplane and cached by a hash of its inputs,
# because a cold build of k8s.io/kubernetes takes 10-20 minutes here.

CONTROLPLANE_SRC := e2e/controlplane
# Go version without running go: a cache hit must not invoke it at all.
CONTROLPLANE_GOVERSION := $(shell cat "$$(dirname "$$(readlink -f "$$(command -v $(GO))")")/../VERSION" 2>/dev/null | head -n1)
CONTROLPLANE_KEY := $(shell { echo '$(CONTROLPLANE_GOVERSION)'; cd $(CONTROLPLANE_SRC) 2>/dev/null && \
	find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-16)
CONTROLPLANE_BIN := $(KUBENODE_CACHE)/controlplane/$(CONTROLPLANE_KEY)/kube-controlplane
# Tests find the binary through this; targets that use it depend on `controlplane`.
export KUBENODE_CONTROLPLANE_BIN := $(CONTROLPLANE_BIN)

K8S_VERSION := v1.37.2
controlplane_ldflags := -s -w $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(K8S_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=37 -X $(p).gitTreeState=clean)

.PHONY: controlplane test-controlplane print-controlplane-bin
controlplane: $(CONTROLPLANE_BIN) ## build kube-controlplane into $KUBENODE_CACHE (no-op when cached)

# No prerequisites: the path itself carries the input hash.
$(CONTROLPLANE_BIN):
	@mkdir -p $(@D)
	@echo "building kube-controlplane (cold: 10-20 min) -> $@"
	cd $(CONTROLPLANE_SRC) && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 \
		$(GO) build -trimpath -ldflags '$(controlplane_ldflags)' -o $(abspath $@).tmp.$$$$ . && mv $(abspath $@).tmp.$$$$ $(abspath $@)
	@# Older builds are dead weight (~130 MB each). Remove those untouched for a
	@# day, not all: a concurrent make may still be about to run one.
	@find $(KUBENODE_CACHE)/controlplane -mindepth 1 -maxdepth 1 -type d ! -name $(CONTROLPLANE_KEY) -mmin +1440 -exec rm -rf {} +

print-controlplane-bin: ## print the path of the cached kube-controlplane
	@echo $(CONTROLPLANE_BIN)

test-controlplane: controlplane ## control plane harness e2e: readyz, node/kube-proxy identities, controllers, scheduler
	$(GO) test -count=1 -p 1 ./e2e/cluster/...

TEST_TARGETS += test-controlplane
