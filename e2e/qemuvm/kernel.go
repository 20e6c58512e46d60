// Package qemuvm boots a Debian cloud kernel under qemu with a tiny
// initramfs and runs one static test binary inside it. It exists because
// the build machine's kernel has no IPVS while Debian's cloud kernel has it
// as modules: kernel tests that need such features run in the VM, and the
// VM's verdict comes back as a marker line on the serial console.
package qemuvm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// MetaPackage is the Debian package whose dependency names the current
// cloud kernel image.
const MetaPackage = "linux-image-cloud-amd64"

// Kernel is an unpacked kernel image package.
type Kernel struct {
	// Version is the kernel release, e.g. "6.1.0-56-cloud-amd64".
	Version string
	// Vmlinuz is the bootable image.
	Vmlinuz string
	// ModulesDir is .../lib/modules/<Version>.
	ModulesDir string
}

// FetchKernel returns the cloud kernel that the package lists currently
// name, downloading and unpacking it into cacheDir/ipvs-kernel/<version>
// only when that directory is not complete yet.
func FetchKernel(ctx context.Context, cacheDir string) (*Kernel, error) {
	pkg, err := kernelPackage(ctx)
	if err != nil {
		return nil, err
	}
	version := strings.TrimPrefix(pkg, "linux-image-")
	dir := filepath.Join(cacheDir, "ipvs-kernel", version)
	k := &Kernel{
		Version:    version,
		Vmlinuz:    filepath.Join(dir, "root", "boot", "vmlinuz-"+version),
		ModulesDir: filepath.Join(dir, "root", "lib", "modules", version),
	}
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return k, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	// Unpack into a temporary sibling and rename, so an interrupted run
	// never leaves a half-unpacked tree that looks complete.
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".fetch-"+version+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// apt drops privileges to _apt for downloads when it can write the
	// directory; let it.
	if err := os.Chmod(tmp, 0o777); err != nil {
		return nil, err
	}
	if err := run(ctx, tmp, "apt-get", "download", pkg); err != nil {
		return nil, fmt.Errorf("download kernel package %s: %w", pkg, err)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("download kernel package %s: want one .deb in %s, found %d", pkg, tmp, len(debs))
	}
	if err := run(ctx, tmp, "dpkg", "-x", debs[0], filepath.Join(tmp, "root")); err != nil {
		return nil, fmt.Errorf("unpack %s: %w", debs[0], err)
	}
	if err := os.Remove(debs[0]); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	for _, p := range []string{k.Vmlinuz, k.ModulesDir} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("kernel package %s: %w", pkg, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".complete"), []byte(pkg+"\n"), 0o644); err != nil {
		return nil, err
	}
	return k, nil
}

// kernelPackage asks apt which image package the meta package depends on,
// refreshing the package lists once when apt does not know the package.
func kernelPackage(ctx context.Context) (string, error) {
	pkg, err := dependsOf(ctx, MetaPackage)
	if err == nil {
		return pkg, nil
	}
	if uerr := run(ctx, "", "apt-get", "update"); uerr != nil {
		return "", fmt.Errorf("find the kernel package: %w (apt-get update: %w)", err, uerr)
	}
	return dependsOf(ctx, MetaPackage)
}

func dependsOf(ctx context.Context, meta string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", meta).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w", meta, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("apt-cache depends %s: no linux-image-* dependency in %q", meta, out)
}

func run(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
