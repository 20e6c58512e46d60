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

# Go side on the host (5 iterations), then one VM run with both the Go side
# and the real kernel, then the markdown table. The kernel half is slow:
# qemu TCG emulates every netlink call (about 10 minutes at 10k services).
bench-ipvs: $(IPVS_TEST_BIN) ## IPVS sync benchmark at 1k/10k services (Go side and real kernel under qemu); prints a markdown table
	@mkdir -p bin
	$(GO) test -count=1 -run '^$$' -bench 'BenchmarkSyncFake' -benchtime 5x ./kubeproxy/internal/ipvs | tee bin/ipvs-bench-host.txt
	$(GO) run ./e2e/qemuvm/cmd/ipvs-vm -bin $(IPVS_TEST_BIN) -mem 2048 -timeout 60m -table -host-bench bin/ipvs-bench-host.txt \
		-- -test.run '^$$' -test.bench 'BenchmarkSync' -test.benchtime 1x -test.timeout 60m
