package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	proxyv1alpha1 "github.com/kubenode/kubenode/api/kubeproxy/v1alpha1"
)

// run starts kube-proxy and blocks until ctx is done. This first version only serves /healthz.
func run(ctx context.Context, o *Options, cfg *proxyv1alpha1.KubeProxyConfiguration, log *zap.Logger) error {
	addr := cfg.HealthzBindAddress
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("healthz listener: %w", err)
	}
	log.Info("serving healthz", zap.String("address", ln.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("healthz server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("healthz shutdown: %w", err)
	}
	return nil
}
