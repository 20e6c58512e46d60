package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
)

// ServiceHealth serves the health-check node ports, with one listener per
// service and node-port address. Load balancers probe them to send traffic
// only to nodes with local endpoints.
type ServiceHealth struct {
	log   *zap.Logger
	proxy *ProxyHealth // may be nil

	mu       sync.Mutex
	services map[types.NamespacedName]*hcService
}

type hcService struct {
	name      types.NamespacedName
	port      uint16
	local     atomic.Int64 // read by the handlers without s.mu (stopping waits for them)
	listeners map[netip.Addr]*hcListener
}

type hcListener struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// NewServiceHealth returns a ServiceHealth with no listeners. When proxy is
// set and unhealthy, every port answers 503.
func NewServiceHealth(log *zap.Logger, proxy *ProxyHealth) *ServiceHealth {
	return &ServiceHealth{log: log, proxy: proxy, services: map[types.NamespacedName]*hcService{}}
}

// SyncServices makes the listeners match: each service in ports gets its
// port opened on each of addrs (the node-port addresses; an unspecified
// address, 0.0.0.0 or ::, means every address of that family), and the
// local endpoint counts are updated. Listeners of services that are gone,
// whose port changed, or on addresses no longer in addrs are closed. A
// listener that cannot be opened is reported and retried on the next call;
// the others are served meanwhile.
func (s *ServiceHealth) SyncServices(addrs []netip.Addr, ports map[types.NamespacedName]uint16, local map[types.NamespacedName]int) error {
	want := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		want[a] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, svc := range s.services {
		if ports[name] != svc.port {
			s.stop(svc, nil)
			delete(s.services, name)
		}
	}
	var errs []error
	if len(ports) > 0 && len(want) == 0 {
		errs = append(errs, errors.New("no node-port address to serve health-check node ports on (see nodePortAddresses)"))
	}
	for name, port := range ports {
		svc, ok := s.services[name]
		if !ok {
			svc = &hcService{name: name, port: port, listeners: map[netip.Addr]*hcListener{}}
			s.services[name] = svc
		}
		svc.local.Store(int64(local[name]))
		s.stop(svc, want)
		for a := range want {
			if _, ok := svc.listeners[a]; ok {
				continue
			}
			if err := s.listen(svc, a); err != nil {
				errs = append(errs, fmt.Errorf("health check node port of service %s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// listen opens svc's port on addr and serves it.
func (s *ServiceHealth) listen(svc *hcService, addr netip.Addr) error {
	network := "tcp4"
	if addr.Is6() && !addr.Is4In6() {
		// Also for "::": only IPv6, so 0.0.0.0 can be served beside it.
		network = "tcp6"
	}
	ln, err := net.Listen(network, netip.AddrPortFrom(addr, svc.port).String())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &hcListener{cancel: cancel, done: make(chan struct{})}
	svc.listeners[addr] = l
	s.log.Debug("serving health check node port", zap.Stringer("service", svc.name), zap.Stringer("address", ln.Addr()))
	go func() {
		defer close(l.done)
		if err := serve(ctx, ln, s.handler(svc), s.log); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("health check node port stopped", zap.Stringer("service", svc.name), zap.Stringer("address", ln.Addr()), zap.Error(err))
		}
	}()
	return nil
}

// stop closes svc's listeners on addresses not in keep (all for nil).
func (s *ServiceHealth) stop(svc *hcService, keep map[netip.Addr]bool) {
	for a, l := range svc.listeners {
		if keep[a] {
			continue
		}
		l.cancel()
		<-l.done
		delete(svc.listeners, a)
	}
}

// Close stops every listener.
func (s *ServiceHealth) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, svc := range s.services {
		s.stop(svc, nil)
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
