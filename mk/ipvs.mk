# IPVS backend: kernel tests inside a Debian cloud kernel under qemu (this
# host's kernel has no IPVS), and the IPVS sync benchmark.
IPVS_TEST_BIN := bin/ipvs-kernel.test

TEST_TARGETS += test-ipvs
BENCH_TARGETS += bench-ipvs

.PHONY: test-ipvs bench-ipvs

$(IPVS_TEST_BIN): FORCE
	$(GO) test -c -tags ipvskernel -o $@ ./kubeproxy/internal/ipvs

test-ipvs: $(IPVS_TEST_BIN) ## IPVS kernel tests in one qemu VM (kernel cached in $KUBENODE_CACHE/ipvs-kernel)
	$(GO) test -count=1 ./e2e/qemuvm/...
	$(GO) run ./e2e/qemuvm/cmd/ipvs-vm -bin $(IPVS_TEST_BIN) -- -test.v -test.timeout=8m
