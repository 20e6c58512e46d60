// Package server holds the kubelet's HTTP endpoints. Today: /healthz on the loopback healthz
// port, failing when the sync loop or the PLEG stalls. (The authenticated :10250 API with logs,
// exec and stats is not here yet.)
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
