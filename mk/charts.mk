# Helm charts (charts/kube-proxy, charts/kubelet), the component images they install, and their
# tests. helm is built from helm.sh/helm/v3 in its own module (e2e/helm, outside go.work: its
# k8s.io build list is not the shipped modules' business) and cached by a hash of its inputs.

HELM_SRC := e2e/helm
HELM_VERSION := v3.22.0
# As helm's own Makefile does: the Kubernetes version `helm template`/`lint` assume without a
# cluster follows the client-go it is built with (k8s.io v0.37 -> 1.37), not helm's 1.20 fallback.
helm_ldflags := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	$(foreach p,pkg/chartutil pkg/lint/rules,-X helm.sh/helm/v3/$(p).k8sVersionMajor=1 -X helm.sh/helm/v3/$(p).k8sVersionMinor=37)
HELM_GOVERSION := $(shell cat "$$(dirname "$$(readlink -f "$$(command -v $(GO))")")/../VERSION" 2>/dev/null | head -n1)
HELM_KEY := $(shell { echo '$(HELM_GOVERSION) $(helm_ldflags)'; cd $(HELM_SRC) 2>/dev/null && \
	find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-16)
HELM_BIN := $(KUBENODE_CACHE)/helm/$(HELM_KEY)/helm
# The chart tests find helm through this.
export KUBENODE_HELM_BIN := $(HELM_BIN)

.PHONY: helm images test-charts print-helm-bin
helm: $(HELM_BIN) ## build the helm command into $KUBENODE_CACHE (no-op when cached)

# No prerequisites: the path itself carries the input hash.
$(HELM_BIN):
	@mkdir -p $(@D)
	@echo "building helm $(HELM_VERSION) (cold: a few minutes) -> $@"
	cd $(HELM_SRC) && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 \
		$(GO) build -trimpath -ldflags '$(helm_ldflags)' -o $(abspath $@).tmp.$$$$ helm.sh/helm/v3/cmd/helm && mv $(abspath $@).tmp.$$$$ $(abspath $@)
	@find $(KUBENODE_CACHE)/helm -mindepth 1 -maxdepth 1 -type d ! -name $(HELM_KEY) -exec rm -rf {} +

print-helm-bin: ## print the path of the cached helm command
	@echo $(HELM_BIN)

# Tags are the versions the binaries report (the Makefile's stamp), read from the binaries
# themselves so a commit landing mid-build cannot make them disagree.
images: bin/kubelet bin/kube-proxy ## component images kubenode/kubelet:<version>, kubenode/kube-proxy:<version> -> bin/images/*.tar
	$(GO) run ./e2e/charts/cmd/kubenode-images -cache $(KUBENODE_CACHE)/agent-images -out bin/images \
		-kubelet bin/kubelet -kube-proxy bin/kube-proxy

test-charts: helm images controlplane ## charts: lint, template (typed, strict config loading), schema rejections, images, install/upgrade/uninstall and the installed kube-proxy running on the real control plane (root)
	KUBENODE_IMAGES_DIR=$(abspath bin/images) KUBENODE_CHARTS_DIR=$(abspath charts) $(GO) test -count=1 -p 1 -timeout=10m ./e2e/charts/...

TEST_TARGETS += test-charts
