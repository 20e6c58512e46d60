package images

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.uber.org/zap"
)

// Registry is an in-memory registry on loopback holding the built images. A repository keeps
// the path it has on its real host (pause, library/busybox, echo), so containerd's certs.d can
// send every host in Hosts() to this one registry.
type Registry struct {
	srv  *http.Server
	addr string
	done chan error
}

// Serve listens on addr ("127.0.0.1:0" when empty), pushes imgs and returns once they can be
// pulled. Close stops it.
func Serve(ctx context.Context, addr string, imgs []Image, log *zap.Logger) (*Registry, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	stdLog, err := zap.NewStdLogAt(log, zap.DebugLevel)
	if err != nil {
		return nil, fmt.Errorf("registry: logger: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("registry: listen %s: %w", addr, err)
	}
	r := &Registry{
		srv: &http.Server{
			Handler:           registry.New(registry.Logger(stdLog)),
			ReadHeaderTimeout: 10 * time.Second,
		},
		addr: ln.Addr().String(),
		done: make(chan error, 1),
	}
	go func() { r.done <- r.srv.Serve(ln) }()
	for _, img := range imgs {
		for _, ref := range img.Refs {
			if err := r.push(ctx, ref, img); err != nil {
				_ = r.Close()
				return nil, err
			}
		}
	}
	log.Info("registry serving", zap.String("addr", r.addr), zap.Int("images", len(imgs)))
	return r, nil
}

func (r *Registry) push(ctx context.Context, ref string, img Image) error {
	src, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("registry: bad image name %q: %w", ref, err)
	}
	dst, err := name.NewTag(fmt.Sprintf("%s/%s:%s", r.addr, src.RepositoryStr(), src.TagStr()), name.Insecure)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if err := remote.Write(dst, img.Image, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("registry: push %s as %s: %w", ref, dst, err)
	}
	return nil
}

// Addr is the registry's host:port on loopback.
func (r *Registry) Addr() string { return r.addr }

// Close stops serving.
func (r *Registry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := r.srv.Shutdown(ctx)
	if serveErr := <-r.done; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	return err
}
