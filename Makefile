# kubenode: the node agents' build, test and run targets. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
export CGO_ENABLED ?= 0

# Where heavy, input-keyed build products live (control plane binary, IPVS kernel, images).
export KUBENODE_CACHE ?= $(HOME)/.cache/kubenode
# Where `make up` and the e2e suites keep their runtime state.
export KUBENODE_STATE ?= /var/lib/kubenode-dev

COMMIT := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE := $(shell git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)
# Each module is tagged on its own (kubelet/v0.3.0); untagged builds are v0.0.0-<commit>.
component_version = $(shell v=$$(git describe --tags --match '$(1)/v*' --abbrev=0 2>/dev/null || true); \
	if [ -n "$$v" ]; then echo "$${v#$(1)/}"; else echo "v0.0.0-$$(git rev-parse --short=12 HEAD 2>/dev/null || echo dev)"; fi)
VERSION_PKG := github.com/kubenode/kubenode/common/version
ldflags = -s -w -X $(VERSION_PKG).gitVersion=$(call component_version,$(1)) \
	-X $(VERSION_PKG).gitCommit=$(COMMIT) -X $(VERSION_PKG).buildDate=$(DATE)

STATICCHECK_VERSION := v0.8.2
UNIT_PKGS := ./api/... ./common/... ./kubelet/... ./kubeproxy/...

# Fragments in mk/ add their own targets and append to these lists.
TEST_TARGETS := test-unit
BENCH_TARGETS :=

.PHONY: all build deps test test-unit bench lint clean help FORCE
all: build

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

deps: ## install the Debian packages the tests and make up need (only the missing ones; root)
	scripts/install-deps

build: bin/kubelet bin/kube-proxy ## build bin/kubelet and bin/kube-proxy (static, version-stamped)

bin/kubelet: FORCE
	$(GO) build -trimpath -ldflags '$(call ldflags,kubelet)' -o $@ ./kubelet/cmd/kubelet

bin/kube-proxy: FORCE
	$(GO) build -trimpath -ldflags '$(call ldflags,kubeproxy)' -o $@ ./kubeproxy/cmd/kube-proxy

test-unit: ## unit and kernel (network namespace) tests of the shipped modules; kernel tests need root
	$(GO) test -count=1 $(UNIT_PKGS)

lint: ## gofmt, go vet and staticcheck over every module
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v /testdata/)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(UNIT_PKGS) ./e2e/...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(UNIT_PKGS) ./e2e/...

clean: ## remove build outputs (the cache in $KUBENODE_CACHE stays)
	rm -rf bin

FORCE:

-include mk/*.mk

test: deps $(TEST_TARGETS) ## every test that runs on this machine: unit, kernel, IPVS under qemu, e2e

bench: $(BENCH_TARGETS) ## benchmarks; prints the tables the README shows
