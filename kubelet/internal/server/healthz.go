// Package server holds the kubelet's HTTP endpoints: /healthz on the loopback healthz port,
// failing when the sync loop or the PLEG stalls, and the authenticated API on address:port
// (server.go: logs, exec, attach, port-forward, /pods, /stats/summary, /metrics).
package server

import (
	"net"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/kubenode/kubenode/common/httpserver"
)

// Check is one named health check; nil means healthy.
type Check struct {
	Name string
	Fn   func() error
}

// NewHealthz returns the healthz server on host:port (Run serves it).
func NewHealthz(host string, port int32, log *zap.Logger, checks ...Check) *httpserver.Server {
	s := httpserver.New(net.JoinHostPort(host, strconv.Itoa(int(port))), log)
	for _, c := range checks {
		fn := c.Fn
		s.AddHealthCheck(c.Name, func(*http.Request) error { return fn() })
	}
	return s
}
