// Command kubenode-images builds the component images kubenode/kubelet:<version> and
// kubenode/kube-proxy:<version> from the static binaries (`make images`), cached by input hash,
// and places them as <out>/kubelet.tar and <out>/kube-proxy.tar.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kubenode/kubenode/e2e/images"
	"go.uber.org/zap"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kubenode-images:", err)
		os.Exit(1)
	}
}

func run() error {
	var o images.AgentOptions
	out := flag.String("out", "bin/images", "directory the image tarballs are placed in")
	flag.StringVar(&o.CacheDir, "cache", "", "cache directory of built tarballs (required)")
	flag.StringVar(&o.KubeletBinary, "kubelet", "bin/kubelet", "static kubelet binary")
	flag.StringVar(&o.KubeProxyBinary, "kube-proxy", "bin/kube-proxy", "static kube-proxy binary")
	flag.StringVar(&o.KubeletVersion, "kubelet-version", "", "kubelet image tag (default: what the binary's --version reports)")
	flag.StringVar(&o.KubeProxyVersion, "kube-proxy-version", "", "kube-proxy image tag (default: what the binary's --version reports)")
	flag.StringVar(&o.BusyboxPath, "busybox", "", "static busybox for the kubelet image's installer (default /bin/busybox)")
	flag.Parse()
	log, err := zap.NewDevelopment()
	if err != nil {
		return err
	}
	o.Log = log.Named("images")
	imgs, err := images.BuildAgents(o)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, img := range imgs {
		base := filepath.Base(img.Path)
		// kubelet-<key>.tar -> kubelet.tar; the cache keeps the keyed name.
		dst := filepath.Join(*out, base[:len(base)-len("-0123456789abcdef.tar")]+".tar")
		if err := place(img.Path, dst); err != nil {
			return err
		}
		fmt.Printf("%s\t%s\n", img.Refs[0], dst)
	}
	return nil
}

// place hard-links src to dst (copying across file systems), replacing dst atomically.
func place(src, dst string) error {
	tmp := dst + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		data, rerr := os.ReadFile(src)
		if rerr != nil {
			return fmt.Errorf("read %s: %w", src, rerr)
		}
		if werr := os.WriteFile(tmp, data, 0o644); werr != nil {
			return fmt.Errorf("write %s: %w", tmp, werr)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("place %s: %w", dst, err)
	}
	return nil
}
