package images

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"go.uber.org/zap"
)

// The repositories of the component images; the tag is the component's version stamp.
const (
	KubeletRepository   = "kubenode/kubelet"
	KubeProxyRepository = "kubenode/kube-proxy"
)

// Where the binaries sit inside the component images (the charts' commands name these).
const (
	KubeletPath   = "/usr/local/bin/kubelet"
	KubeProxyPath = "/usr/local/bin/kube-proxy"
)

// agentBuilderVersion is part of every component image's cache key.
const agentBuilderVersion = "1"

// installerApplets are the busybox applets the kubelet chart's installer runs in the kubelet
// image: the kubelet runs on the host, and the image exists to copy it there.
var installerApplets = []string{"sh", "cp", "mv", "sleep"}

// AgentOptions configure BuildAgents.
type AgentOptions struct {
	// CacheDir holds the built tarballs, one per input key. Required.
	CacheDir string
	// KubeletBinary and KubeProxyBinary are the static binaries (bin/kubelet, bin/kube-proxy).
	KubeletBinary, KubeProxyBinary string
	// KubeletVersion and KubeProxyVersion are the image tags; empty means the version the binary
	// reports (`--version`), so tag and binary cannot disagree.
	KubeletVersion, KubeProxyVersion string
	// BusyboxPath is the static busybox the kubelet image carries for its installer; empty means
	// /bin/busybox (Debian's busybox-static).
	BusyboxPath string
	Log         *zap.Logger
}

// AgentImage is one built component image and the tarball it is stored in.
type AgentImage struct {
	Image
	// Path is the cached tarball, in `docker save` layout, which `ctr images import`,
	// `docker load` and tarball.ImageFromPath read.
	Path string
}

// BuildAgents returns the kubelet and kube-proxy images, built from the binaries or loaded from
// the cache when the binaries, versions and busybox are unchanged.
func BuildAgents(o AgentOptions) ([]AgentImage, error) {
	if o.CacheDir == "" {
		return nil, fmt.Errorf("images: AgentOptions.CacheDir is required")
	}
	if o.KubeletBinary == "" || o.KubeProxyBinary == "" {
		return nil, fmt.Errorf("images: AgentOptions.KubeletBinary and KubeProxyBinary are required")
	}
	var err error
	if o.KubeletVersion == "" {
		if o.KubeletVersion, err = BinaryVersion(o.KubeletBinary); err != nil {
			return nil, err
		}
	}
	if o.KubeProxyVersion == "" {
		if o.KubeProxyVersion, err = BinaryVersion(o.KubeProxyBinary); err != nil {
			return nil, err
		}
	}
	if o.BusyboxPath == "" {
		o.BusyboxPath = "/bin/busybox"
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("images: cache dir: %w", err)
	}
	busybox, err := os.ReadFile(o.BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("images: busybox for the kubelet installer (install busybox-static): %w", err)
	}
	kubelet, err := agentImage(o, "kubelet", o.KubeletBinary, KubeletRepository+":"+o.KubeletVersion, KubeletPath, busybox)
	if err != nil {
		return nil, err
	}
	proxy, err := agentImage(o, "kube-proxy", o.KubeProxyBinary, KubeProxyRepository+":"+o.KubeProxyVersion, KubeProxyPath, nil)
	if err != nil {
		return nil, err
	}
	return []AgentImage{kubelet, proxy}, nil
}

// BinaryVersion runs `binary --version` and returns the version it reports: the second word of
// "<name> <version> (commit ..., built ...)".
func BinaryVersion(binary string) (string, error) {
	out, err := exec.Command(binary, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("images: %s --version: %w", binary, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 || !strings.HasPrefix(f[1], "v") {
		return "", fmt.Errorf("images: %s --version printed %q, not \"<name> v<version> ...\"", binary, out)
	}
	return f[1], nil
}

// agentImage builds one component image: the binary at path, plus busybox with the installer's
// applets when busybox is not nil.
func agentImage(o AgentOptions, imgName, binary, ref, path string, busybox []byte) (AgentImage, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return AgentImage{}, fmt.Errorf("images: %s binary (run make build): %w", imgName, err)
	}
	tag, err := nameTag(ref)
	if err != nil {
		return AgentImage{}, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "agent %s %s %s %s %s\n", agentBuilderVersion, runtime.GOARCH, imgName, ref, path)
	h.Write(data)
	h.Write(busybox)
	key := hex.EncodeToString(h.Sum(nil))[:16]
	file := filepath.Join(o.CacheDir, imgName+"-"+key+".tar")
	if _, err := os.Stat(file); err == nil {
		img, err := tarball.ImageFromPath(file, nil)
		if err == nil {
			o.Log.Debug("component image from cache", zap.String("image", ref), zap.String("path", file))
			return AgentImage{Image: Image{Refs: []string{ref}, Image: img}, Path: file}, nil
		}
		o.Log.Warn("unreadable cached image, rebuilding", zap.String("path", file), zap.Error(err))
	}
	start := time.Now()
	var l layerBuilder
	for _, d := range []string{"/usr", "/usr/local", "/usr/local/bin", "/etc", "/var", "/var/lib", "/run"} {
		l.dir(d, 0o755)
	}
	l.dir("/tmp", 0o1777)
	l.file(path, data, 0o755)
	if busybox != nil {
		l.dir("/bin", 0o755)
		l.file("/bin/busybox", busybox, 0o755)
		for _, a := range installerApplets {
			l.symlink("/bin/"+a, "busybox")
		}
	}
	img, err := assemble(&l, v1.Config{
		Entrypoint: []string{path},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Labels: map[string]string{
			"org.opencontainers.image.title":   imgName,
			"org.opencontainers.image.version": tag.TagStr(),
			"org.opencontainers.image.source":  "https://github.com/kubenode/kubenode",
		},
	})
	if err != nil {
		return AgentImage{}, fmt.Errorf("images: build %s: %w", ref, err)
	}
	tmp := file + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, map[name.Reference]v1.Image{tag: img}); err != nil {
		return AgentImage{}, fmt.Errorf("images: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return AgentImage{}, fmt.Errorf("images: %w", err)
	}
	// Tarballs of earlier binaries are never read again.
	if old, _ := filepath.Glob(filepath.Join(o.CacheDir, imgName+"-*.tar")); len(old) > 0 {
		for _, p := range old {
			if p != file {
				_ = os.Remove(p)
			}
		}
	}
	o.Log.Info("component image built", zap.String("image", ref), zap.String("path", file), zap.Duration("took", time.Since(start)))
	img, err = tarball.ImageFromPath(file, nil)
	if err != nil {
		return AgentImage{}, fmt.Errorf("images: reload %s: %w", file, err)
	}
	return AgentImage{Image: Image{Refs: []string{ref}, Image: img}, Path: file}, nil
}
