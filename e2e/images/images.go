// Package images builds the few OCI images the node tests and `make up` run (pause, busybox,
// echo) without a Docker engine, caches them as tarballs keyed by their inputs, and serves them
// under their usual names from an in-memory registry on loopback.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"go.uber.org/zap"
)

// The names the images are served under. Pulls of these hosts are redirected to the local
// registry by containerd's certs.d (see Hosts).
const (
	Pause         = "registry.k8s.io/pause:3.10"
	Busybox       = "docker.io/library/busybox:1.36"
	BusyboxLatest = "docker.io/library/busybox:latest"
	Echo          = "registry.kubenode.test/echo:v1"
)

// builderVersion is part of every cache key: bump it when the way images are assembled changes.
const builderVersion = "2"

// Hosts returns the registry hosts whose images the local registry serves.
func Hosts() []string { return []string{"registry.k8s.io", "docker.io", "registry.kubenode.test"} }

// Options configure Build.
type Options struct {
	// CacheDir holds the built image tarballs, one per input key. Required.
	CacheDir string
	// ModuleDir is the e2e module's directory (holding images/pause and images/echo). Empty means
	// ask `go list -m` from the current directory, which works anywhere in the workspace.
	ModuleDir string
	// Go is the go command; empty means "go".
	Go string
	// BusyboxPath is the static busybox binary; empty means /bin/busybox (Debian's busybox-static).
	BusyboxPath string
	Log         *zap.Logger
}

// Image is one built image and the names it is served under.
type Image struct {
	Refs  []string
	Image v1.Image
}

// Build returns the pause, busybox and echo images, from the cache when their inputs are unchanged.
func Build(ctx context.Context, o Options) ([]Image, error) {
	if o.CacheDir == "" {
		return nil, fmt.Errorf("images: Options.CacheDir is required")
	}
	if o.Go == "" {
		o.Go = "go"
	}
	if o.BusyboxPath == "" {
		o.BusyboxPath = "/bin/busybox"
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.ModuleDir == "" {
		out, err := exec.CommandContext(ctx, o.Go, "list", "-m", "-f", "{{.Dir}}", "github.com/kubenode/kubenode/e2e").Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
			}
			return nil, fmt.Errorf("images: find the e2e module directory with go list (run inside the kubenode workspace, or set Options.ModuleDir): %w", err)
		}
		o.ModuleDir = strings.TrimSpace(string(out))
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("images: cache dir: %w", err)
	}
	goVersion, err := exec.CommandContext(ctx, o.Go, "env", "GOVERSION").Output()
	if err != nil {
		return nil, fmt.Errorf("images: go env GOVERSION: %w", err)
	}
	b := builder{o: o, goVersion: strings.TrimSpace(string(goVersion))}

	var imgs []Image
	for _, prog := range []struct{ dir, ref string }{{"pause", Pause}, {"echo", Echo}} {
		img, err := b.goImage(ctx, prog.dir, prog.ref)
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	bb, err := b.busybox(ctx)
	if err != nil {
		return nil, err
	}
	return append(imgs, bb), nil
}

type builder struct {
	o         Options
	goVersion string
}

// cached loads the tarball for key, or makes the image and stores it first.
func (b builder) cached(imgName, key string, refs []string, makeImage func() (v1.Image, error)) (Image, error) {
	path := filepath.Join(b.o.CacheDir, imgName+"-"+key[:16]+".tar")
	if _, err := os.Stat(path); err == nil {
		img, err := tarball.ImageFromPath(path, nil)
		if err == nil {
			b.o.Log.Debug("image from cache", zap.String("image", imgName), zap.String("path", path))
			return Image{Refs: refs, Image: img}, nil
		}
		b.o.Log.Warn("unreadable cached image, rebuilding", zap.String("path", path), zap.Error(err))
	}
	start := time.Now()
	img, err := makeImage()
	if err != nil {
		return Image{}, fmt.Errorf("images: build %s: %w", imgName, err)
	}
	tagged := map[name.Reference]v1.Image{}
	for _, r := range refs {
		t, err := nameTag(r)
		if err != nil {
			return Image{}, err
		}
		tagged[t] = img
	}
	tmp := path + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, tagged); err != nil {
		return Image{}, fmt.Errorf("images: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return Image{}, fmt.Errorf("images: %w", err)
	}
	// Tarballs of earlier inputs are never read again.
	if old, _ := filepath.Glob(filepath.Join(b.o.CacheDir, imgName+"-*.tar")); len(old) > 0 {
		for _, p := range old {
			if p != path {
				_ = os.Remove(p)
			}
		}
	}
	b.o.Log.Info("image built", zap.String("image", imgName), zap.String("path", path), zap.Duration("took", time.Since(start)))
	// Reload from disk so callers never hold the in-memory layers of a fresh build.
	img, err = tarball.ImageFromPath(path, nil)
	if err != nil {
		return Image{}, fmt.Errorf("images: reload %s: %w", path, err)
	}
	return Image{Refs: refs, Image: img}, nil
}

func nameTag(ref string) (name.Tag, error) {
	t, err := name.NewTag(ref)
	if err != nil {
		return name.Tag{}, fmt.Errorf("images: bad image name %q: %w", ref, err)
	}
	return t, nil
}

// goImage builds the static Go program in <module>/images/<dir> into a one-file image.
func (b builder) goImage(ctx context.Context, dir, ref string) (Image, error) {
	src := filepath.Join(b.o.ModuleDir, "images", dir)
	h := sha256.New()
	fmt.Fprintf(h, "go-image %s %s %s %s\n", builderVersion, b.goVersion, runtime.GOARCH, dir)
	if err := hashDir(h, src); err != nil {
		return Image{}, fmt.Errorf("images: hash %s: %w", src, err)
	}
	key := hex.EncodeToString(h.Sum(nil))
	return b.cached(dir, key, []string{ref}, func() (v1.Image, error) {
		tmp, err := os.MkdirTemp(b.o.CacheDir, "build-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		bin := filepath.Join(tmp, dir)
		cmd := exec.CommandContext(ctx, b.o.Go, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bin, "./images/"+dir)
		cmd.Dir = b.o.ModuleDir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./images/%s: %w: %s", dir, err, out)
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		var l layerBuilder
		l.file("/"+dir, data, 0o755)
		return assemble(&l, v1.Config{
			Entrypoint: []string{"/" + dir},
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		})
	})
}

// busyboxApplets are the ones tests rely on; Build fails if the binary lacks any of them.
var busyboxApplets = []string{"sh", "sleep", "wget", "cat", "env", "ls", "echo", "hostname",
	"nc", "id", "true", "false", "timeout", "dd", "mkdir", "rm", "touch", "ps", "kill", "date", "head", "grep"}

// busybox makes an image of the host's static busybox with a symlink per applet.
func (b builder) busybox(ctx context.Context) (Image, error) {
	data, err := os.ReadFile(b.o.BusyboxPath)
	if err != nil {
		return Image{}, fmt.Errorf("images: busybox (install busybox-static): %w", err)
	}
	sum := sha256.Sum256(data)
	key := sha256.Sum256([]byte("busybox " + builderVersion + " " + hex.EncodeToString(sum[:])))
	return b.cached("busybox", hex.EncodeToString(key[:]), []string{Busybox, BusyboxLatest}, func() (v1.Image, error) {
		out, err := exec.CommandContext(ctx, b.o.BusyboxPath, "--list").Output()
		if err != nil {
			return nil, fmt.Errorf("%s --list: %w", b.o.BusyboxPath, err)
		}
		applets := strings.Fields(string(out))
		have := map[string]bool{}
		for _, a := range applets {
			have[a] = true
		}
		for _, a := range busyboxApplets {
			if !have[a] {
				return nil, fmt.Errorf("%s has no %q applet", b.o.BusyboxPath, a)
			}
		}
		var l layerBuilder
		for _, d := range []string{"/bin", "/etc", "/root", "/proc", "/sys", "/dev", "/var", "/usr", "/usr/bin"} {
			l.dir(d, 0o755)
		}
		l.dir("/tmp", 0o1777)
		l.file("/bin/busybox", data, 0o755)
		sort.Strings(applets)
		for _, a := range applets {
			if a != "busybox" {
				l.symlink("/bin/"+a, "busybox")
			}
		}
		if !have["printenv"] {
			// Debian's busybox-static lacks printenv, which pod tests use to read their env.
			l.file("/bin/printenv", []byte(printenvScript), 0o755)
		}
		l.file("/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644)
		l.file("/etc/group", []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)
		return assemble(&l, v1.Config{
			Cmd: []string{"sh"},
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		})
	})
}

// printenvScript is printenv(1) for busybox builds without the applet: all variables, or the
// named ones (exit 1 if any is unset).
const printenvScript = `#!/bin/sh
[ $# -eq 0 ] && exec env
rc=0
for v in "$@"; do
	if env | grep -q "^$v="; then eval "printf '%s\n' \"\$$v\""; else rc=1; fi
done
exit $rc
`

// assemble makes a linux image for this architecture from l's one layer and cfg. l is a pointer:
// closing its tar writer finishes the very buffer the layer then reads (a copy would miss the
// last entry's padding and the end-of-archive blocks).
func assemble(l *layerBuilder, cfg v1.Config) (v1.Image, error) {
	layer, err := l.layer()
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// layerBuilder writes a reproducible tar: fixed times and owners, so the digest depends only on
// the content.
type layerBuilder struct {
	buf bytes.Buffer
	tw  *tar.Writer
	err error
}

func (l *layerBuilder) write(h *tar.Header, data []byte) {
	if l.err != nil {
		return
	}
	if l.tw == nil {
		l.tw = tar.NewWriter(&l.buf)
	}
	h.Name = strings.TrimPrefix(h.Name, "/")
	h.ModTime = time.Unix(0, 0)
	h.Format = tar.FormatPAX
	if l.err = l.tw.WriteHeader(h); l.err == nil && data != nil {
		_, l.err = l.tw.Write(data)
	}
}

func (l *layerBuilder) dir(p string, mode int64) {
	l.write(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode}, nil)
}

func (l *layerBuilder) file(p string, data []byte, mode int64) {
	l.write(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data))}, data)
}

func (l *layerBuilder) symlink(p, target string) {
	l.write(&tar.Header{Typeflag: tar.TypeSymlink, Name: p, Linkname: target, Mode: 0o777}, nil)
}

func (l *layerBuilder) layer() (v1.Layer, error) {
	if l.err == nil && l.tw != nil {
		l.err = l.tw.Close()
	}
	if l.err != nil {
		return nil, fmt.Errorf("layer tar: %w", l.err)
	}
	data := l.buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// hashDir hashes every regular file's name and content under dir, in a stable order.
func hashDir(h io.Writer, dir string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s %d\n", rel, len(data))
		_, err = h.Write(data)
		return err
	})
}
