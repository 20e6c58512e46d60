# e2e/netnstest, the network namespace plumbing the e2e suites share (root; under a second):
# Do and Start run in the namespace, a named namespace is removed at test end, and the relay
# reaches the host's loopback until closed.

TEST_TARGETS += test-netnstest

.PHONY: test-netnstest

test-netnstest: ## e2e/netnstest: throwaway network namespaces, loopback relay, in-namespace HTTP client (root)
	$(GO) test -count=1 ./e2e/netnstest/...
