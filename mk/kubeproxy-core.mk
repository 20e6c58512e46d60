# kube-proxy core (changes, plan, proxier, healthcheck, conntrack): its unit
# and kernel tests run in test-unit; this adds the planner benchmark.

.PHONY: bench-proxy-core
bench-proxy-core: ## kube-proxy planner: full and one-change plan builds at 1k/10k/30k services
	$(GO) test -run '^$$' -bench . -benchtime 5x ./kubeproxy/internal/plan

BENCH_TARGETS += bench-proxy-core
