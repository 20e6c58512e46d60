# kube-proxy nftables backend (kubeproxy/internal/nft). Its kernel tests run
# in `make test` through test-unit (go test ./kubeproxy/...) as root.

BENCH_TARGETS += bench-nft

.PHONY: test-nft bench-nft
test-nft: ## nftables backend: unit tests and kernel tests in throwaway netns (root)
	$(GO) test -count=1 ./kubeproxy/internal/nft/

bench-nft: ## nftables backend at 1k/10k/30k services x 10 endpoints (root), with kube-proxy's GC policy and, at 30k, Go's default GC and GOMEMLIMIT for comparison: sync times, programming latency, RSS (~1 min)
	KUBENODE_NFT_BENCH=1 $(GO) test -count=1 -timeout 40m -run '^TestScaleReport$$' -v ./kubeproxy/internal/nft/ \
		| grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok '
