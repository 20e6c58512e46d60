# The kubelet benchmark: bin/kubelet as a process on containerd + CNI and the local control
# plane. One run (about 5 minutes, root) prints a markdown table: pod start latency for a
# burst of 30 pods against the raw CRI floor, and the kubelet's RSS and CPU idle with 0 and
# 100 pods, each beside its target. The table is also kept in bin/kubelet-bench.md.

BENCH_TARGETS += bench-kubelet
TEST_TARGETS += test-kubeletbench

.PHONY: bench-kubelet test-kubeletbench

bench-kubelet: build controlplane ## kubelet: pod start p50/p99 vs the CRI floor, RSS and CPU at 0 and 100 idle pods (root)
	@mkdir -p bin
	$(GO) run ./e2e/kubeletbench/cmd/kubelet-bench -kubelet bin/kubelet -controlplane $(KUBENODE_CONTROLPLANE_BIN) \
		| tee bin/kubelet-bench.md

test-kubeletbench: ## the kubelet benchmark's own unit tests (percentiles, /proc parsing, table and verdicts)
	$(GO) test -count=1 ./e2e/kubeletbench/...
