package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
)

// ServiceHealth serves one listener per health-check node port. Load
// balancers probe it to send traffic only to nodes with local endpoints.
type ServiceHealth struct {
	log    *zap.Logger
	bindIP string
	proxy  *ProxyHealth // may be nil

	mu       sync.Mutex
	services map[types.NamespacedName]*hcService
}

type hcService struct {
	name   types.NamespacedName
	port   uint16
	local  atomic.Int64 // read by the handler without s.mu (Shutdown waits for handlers)
	cancel context.CancelFunc
	done   chan struct{}
}

// NewServiceHealth serves node ports on bindIP ("" = every address). When
// proxy is set and unhealthy, every port answers 503.
func NewServiceHealth(log *zap.Logger, bindIP string, proxy *ProxyHealth) *ServiceHealth {
	return &ServiceHealth{log: log, bindIP: bindIP, proxy: proxy, services: map[types.NamespacedName]*hcService{}}
}

// SyncServices opens listeners for new ports, closes those of services that
// are gone (or whose port changed) and updates the local endpoint counts.
// A port that cannot be opened is reported and retried on the next call.
func (s *ServiceHealth) SyncServices(ports map[types.NamespacedName]uint16, local map[types.NamespacedName]int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, svc := range s.services {
		if ports[name] != svc.port {
			s.stop(svc)
			delete(s.services, name)
		}
	}
	var errs []error
	for name, port := range ports {
		if svc, ok := s.services[name]; ok {
			svc.local.Store(int64(local[name]))
			continue
		}
		addr := net.JoinHostPort(s.bindIP, strconv.Itoa(int(port)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("health check node port of service %s: %w", name, err))
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		svc := &hcService{name: name, port: port, cancel: cancel, done: make(chan struct{})}
		svc.local.Store(int64(local[name]))
		s.services[name] = svc
		go func() {
			defer close(svc.done)
			if err := serve(ctx, ln, s.handler(svc), s.log); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Warn("health check node port stopped", zap.Stringer("service", name), zap.Error(err))
			}
		}()
	}
	return errors.Join(errs...)
}

func (s *ServiceHealth) stop(svc *hcService) {
	svc.cancel()
	<-svc.done
}

// Close stops every listener.
func (s *ServiceHealth) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, svc := range s.services {
		s.stop(svc)
		delete(s.services, name)
	}
}

type serviceRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

type serviceStatus struct {
	Service             serviceRef `json:"service"`
	LocalEndpoints      int        `json:"localEndpoints"`
	ServiceProxyHealthy bool       `json:"serviceProxyHealthy"`
}

func (s *ServiceHealth) handler(svc *hcService) http.Handler {
	name := svc.name
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		local := int(svc.local.Load())
		healthy := s.proxy == nil || s.proxy.Healthy()
		code := http.StatusOK
		if local == 0 || !healthy {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, serviceStatus{
			Service:             serviceRef{Namespace: name.Namespace, Name: name.Name},
			LocalEndpoints:      local,
			ServiceProxyHealthy: healthy,
		})
	})
}
