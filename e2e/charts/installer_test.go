package charts

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/kubenode/kubenode/e2e/images"
)

// The kubelet chart's installer, as rendered, run in the kubelet image's file system (chroot,
// with the hostPath volume as a plain directory) leaves the image's kubelet on the "host".
func TestKubeletInstallerCopiesBinary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chroot into the image's file system)")
	}
	imagesDir := os.Getenv("KUBENODE_IMAGES_DIR")
	if imagesDir == "" {
		t.Skip("KUBENODE_IMAGES_DIR not set: run through make test-charts (it runs make images)")
	}
	h := newHelm(t)
	r := render(t, h, "kubelet", "--set", "installer.enabled=true")
	if len(r.daemonSets) != 1 {
		t.Fatalf("no installer DaemonSet: %v", r.kinds)
	}
	pod := r.daemonSets[0].Spec.Template.Spec
	install := pod.InitContainers[0]
	var mountPath string
	for _, m := range install.VolumeMounts {
		mountPath = m.MountPath
	}

	root := t.TempDir()
	img, err := tarball.ImageFromPath(filepath.Join(imagesDir, "kubelet.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	unpack(t, mutate.Extract(img), root)
	host := filepath.Join(root, mountPath)
	if err := os.MkdirAll(host, 0o755); err != nil {
		t.Fatal(err)
	}
	// An old kubelet is replaced, not written into (a running kubelet keeps its file).
	writeFile(t, filepath.Join(host, "kubelet"), "old")
	var oldIno uint64
	if fi, err := os.Stat(filepath.Join(host, "kubelet")); err == nil {
		oldIno = fi.Sys().(*syscall.Stat_t).Ino
	}

	cmd := exec.Command(install.Command[0], install.Command[1:]...)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("installer command %q in the kubelet image: %v: %s", install.Command, err, out)
	}
	got, err := os.ReadFile(filepath.Join(host, "kubelet"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(root, images.KubeletPath))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("host kubelet (%d bytes) is not the image's (%d bytes)", len(got), len(want))
	}
	fi, err := os.Stat(filepath.Join(host, "kubelet"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("host kubelet mode %v is not executable", fi.Mode())
	}
	if fi.Sys().(*syscall.Stat_t).Ino == oldIno {
		t.Error("the old kubelet file was overwritten in place; it must be replaced by a rename")
	}
	if _, err := os.Stat(filepath.Join(host, "kubelet.new")); !os.IsNotExist(err) {
		t.Errorf("kubelet.new left behind: %v", err)
	}
	if !strings.HasPrefix(string(out), "kubelet v") {
		t.Errorf("installer output %q: want the installed kubelet's version", out)
	}
}

// unpack writes a flattened image file system (directories, files, symlinks) under root.
func unpack(t *testing.T, rc io.ReadCloser, root string) {
	t.Helper()
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hd, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, filepath.Clean("/"+hd.Name))
		switch hd.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, os.FileMode(hd.Mode).Perm()|0o700)
		case tar.TypeSymlink:
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.Symlink(hd.Linkname, p)
			}
		case tar.TypeReg:
			var data []byte
			if data, err = io.ReadAll(tr); err == nil {
				if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
					err = os.WriteFile(p, data, os.FileMode(hd.Mode).Perm())
				}
			}
		}
		if err != nil {
			t.Fatalf("unpack %s: %v", hd.Name, err)
		}
	}
}
