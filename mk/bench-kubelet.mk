# The kubelet benchmark: bin/kubelet as a process on containerd + CNI and the local control
# plane. One run (about 5 minutes, root) prints a markdown table: pod start latency for a
# burst of 30 pods against the raw CRI floor, in KUBELET_BENCH_ROUNDS alternating rounds (a
# floor burst all at once, a floor burst paced K start calls at a time like the kubelet, a
# kubelet burst; each overhead is the median of the rounds' differences), and the kubelet's
# RSS and CPU idle with 0 and 100 pods, each beside its target. The table is also kept in
# bin/kubelet-bench.md. KUBELET_BENCH_PACED_FLOOR sets K (the kubelet's maxParallelPodStarts
# too); unset is the kubelet's default for this machine, 0 is no cap and no paced floor.
KUBELET_BENCH_ROUNDS ?= 5
KUBELET_BENCH_PACED_FLOOR ?=

BENCH_TARGETS += bench-kubelet
TEST_TARGETS += test-kubeletbench

.PHONY: bench-kubelet test-kubeletbench

bench-kubelet: build controlplane ## kubelet: pod start p50/p99 vs the CRI floor (all at once and paced), RSS and CPU at 0 and 100 idle pods (root)
	@mkdir -p bin
	$(GO) run ./e2e/kubeletbench/cmd/kubelet-bench -kubelet bin/kubelet -controlplane $(KUBENODE_CONTROLPLANE_BIN) \
		-rounds $(KUBELET_BENCH_ROUNDS) $(if $(KUBELET_BENCH_PACED_FLOOR),-paced-floor $(KUBELET_BENCH_PACED_FLOOR)) | tee bin/kubelet-bench.md

test-kubeletbench: ## the kubelet benchmark's own unit tests (percentiles, /proc parsing, table and verdicts)
	$(GO) test -count=1 ./e2e/kubeletbench/...

# Profiling build: the shipped kubelet has no pprof endpoint, so this one adds a file through
# `go build -overlay` (nothing in the tree changes) that serves /debug/pprof on
# $KUBENODE_PPROF_ADDR. The bench then saves CPU profiles of the burst and of the loaded idle
# window and a heap profile, and the top entries are printed.
KUBELET_PROFILE_DIR := bin/kubelet-profile

bin/kubelet-pprof: FORCE
	@mkdir -p bin
	@printf '{"Replace":{"%s":"%s"}}\n' "$(abspath kubelet/cmd/kubelet/zz_bench_pprof.go)" \
		"$(abspath e2e/kubeletbench/testdata/pprof.go.overlay)" > bin/kubelet-pprof-overlay.json
	$(GO) build -trimpath -overlay bin/kubelet-pprof-overlay.json -o $@ ./kubelet/cmd/kubelet

.PHONY: bench-kubelet-profile
bench-kubelet-profile: bin/kubelet-pprof controlplane ## bench-kubelet with pprof: CPU (burst, idle at 100 pods) and heap profiles in bin/kubelet-profile (root)
	$(GO) run ./e2e/kubeletbench/cmd/kubelet-bench -kubelet bin/kubelet-pprof -controlplane $(KUBENODE_CONTROLPLANE_BIN) \
		-profile-dir $(KUBELET_PROFILE_DIR)
	$(GO) tool pprof -top -nodecount=25 bin/kubelet-pprof $(KUBELET_PROFILE_DIR)/burst-cpu.pprof
	$(GO) tool pprof -top -nodecount=25 bin/kubelet-pprof $(KUBELET_PROFILE_DIR)/idle-cpu.pprof
	$(GO) tool pprof -top -nodecount=25 -sample_index=inuse_space bin/kubelet-pprof $(KUBELET_PROFILE_DIR)/idle-heap.pprof
