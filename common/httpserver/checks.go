package httpserver

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// check is one named health or readiness check.
type check struct {
	name string
	fn   func(*http.Request) error
}

// checkSet is an ordered, growable list of checks, safe for concurrent use
// so checks can be added while the server runs.
type checkSet struct {
	mu     sync.RWMutex
	checks []check
}

func (c *checkSet) add(name string, fn func(*http.Request) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checks = append(c.checks, check{name: name, fn: fn})
}

func (c *checkSet) has(name string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, ch := range c.checks {
		if ch.name == name {
			return true
		}
	}
	return false
}

func (c *checkSet) list() []check {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]check(nil), c.checks...)
}

// checkHandler serves one health endpoint over the checks that sets returns.
type checkHandler struct {
	endpoint string // "healthz", "livez", "readyz"
	checks   func() []check
	log      *zap.Logger
}

// result is the outcome of one check.
type result struct {
	name string
	err  error
}

// ServeHTTP runs every check (or the one named in the path) and reports.
func (h checkHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	all := h.checks()
	// /healthz/<name> runs that check only.
	if name := strings.Trim(strings.TrimPrefix(r.URL.Path, "/"+h.endpoint), "/"); name != "" {
		var one []check
		for _, c := range all {
			if c.name == name {
				one = append(one, c)
			}
		}
		if len(one) == 0 {
			http.Error(w, fmt.Sprintf("%s: no check named %q", h.endpoint, name), http.StatusNotFound)
			return
		}
		all = one
	}

	excluded := map[string]bool{}
	for _, name := range r.URL.Query()["exclude"] {
		excluded[strings.TrimSpace(name)] = true
	}
	results := make([]result, 0, len(all))
	for _, c := range all {
		if excluded[c.name] {
			continue
		}
		results = append(results, result{name: c.name, err: c.fn(r)})
	}
	_, verbose := r.URL.Query()["verbose"]
	status, body := report(h.endpoint, results, verbose)

	if status != http.StatusOK {
		var failed []zap.Field
		for _, res := range results {
			if res.err != nil {
				failed = append(failed, zap.NamedError(res.name, res.err))
			}
		}
		h.log.Info("health check failed", append(failed, zap.String("endpoint", h.endpoint))...)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// report renders results the way kube-apiserver does. Without verbose a
// failure lists only the failed checks and withholds the reasons, which may
// say more than an unauthenticated prober should learn; the log has them.
func report(endpoint string, results []result, verbose bool) (int, []byte) {
	failed := false
	for _, res := range results {
		if res.err != nil {
			failed = true
		}
	}
	if !failed && !verbose {
		return http.StatusOK, []byte("ok")
	}
	var b bytes.Buffer
	for _, res := range results {
		switch {
		case res.err == nil && verbose:
			fmt.Fprintf(&b, "[+]%s ok\n", res.name)
		case res.err != nil && verbose:
			fmt.Fprintf(&b, "[-]%s failed: %v\n", res.name, res.err)
		case res.err != nil:
			fmt.Fprintf(&b, "[-]%s failed: reason withheld\n", res.name)
		}
	}
	if failed {
		fmt.Fprintf(&b, "%s check failed\n", endpoint)
		return http.StatusInternalServerError, b.Bytes()
	}
	fmt.Fprintf(&b, "%s check passed\n", endpoint)
	return http.StatusOK, b.Bytes()
}
