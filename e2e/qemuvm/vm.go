package qemuvm

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Options describe one VM run of one test binary.
type Options struct {
	Kernel *Kernel
	// Binary is a static (CGO_ENABLED=0) executable, e.g. from go test -c.
	Binary string
	// Args are passed to Binary, e.g. -test.v -test.run X.
	Args []string
	// Modules are loaded (with their dependencies) before Binary runs.
	Modules []string
	// Busybox is a static busybox; default /bin/busybox.
	Busybox string
	// MemoryMB defaults to 512; Timeout (the whole boot) to 10 minutes.
	MemoryMB int
	Timeout  time.Duration
	// Console receives the guest's serial output as it arrives (may be nil).
	Console io.Writer
	// WorkDir holds the initramfs; default a temporary directory.
	WorkDir string
}

// Result is what the guest reported.
type Result struct {
	Passed bool
	// Output is the serial console with \r removed.
	Output   string
	Duration time.Duration
}

// ErrFailed is returned (wrapped) when the guest reported failure or never
// reported at all.
var ErrFailed = errors.New("test binary in the VM failed")

const markerPrefix = "KUBENODE-QEMUVM-RESULT"

// RunTestBinary boots opts.Kernel with an initramfs holding busybox, the
// modules and the binary, runs the binary once and judges the run by the
// marker line /init prints: qemu itself exits 0 whatever the guest did.
func RunTestBinary(ctx context.Context, opts Options) (*Result, error) {
	if opts.Kernel == nil || opts.Binary == "" {
		return nil, errors.New("qemuvm: Kernel and Binary are required")
	}
	if opts.Busybox == "" {
		opts.Busybox = "/bin/busybox"
	}
	if opts.MemoryMB == 0 {
		opts.MemoryMB = 512
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Minute
	}
	work := opts.WorkDir
	if work == "" {
		d, err := os.MkdirTemp("", "kubenode-qemuvm-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		work = d
	}
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	marker := markerPrefix + " " + hex.EncodeToString(nonce)
	initrd := filepath.Join(work, "initrd.cpio.gz")
	if err := BuildInitramfs(initrd, opts, marker); err != nil {
		return nil, err
	}
	return boot(ctx, opts, initrd, marker)
}

// BuildInitramfs writes a gzip'd newc archive for opts to path; marker is
// the prefix of the verdict line /init prints.
func BuildInitramfs(path string, opts Options, marker string) error {
	mods, err := ResolveModules(opts.Kernel.ModulesDir, opts.Modules)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zw, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		return err
	}
	cw := &cpioWriter{w: zw}
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "run", "modules"} {
		if err := cw.Dir(d); err != nil {
			return err
		}
	}
	if err := cw.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	add := func(name, src string, perm uint32) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		return cw.File(name, perm, b)
	}
	if err := add("bin/busybox", opts.Busybox, 0o755); err != nil {
		return fmt.Errorf("initramfs: busybox: %w", err)
	}
	if err := cw.Symlink("bin/sh", "busybox"); err != nil {
		return err
	}
	if err := add("test", opts.Binary, 0o755); err != nil {
		return fmt.Errorf("initramfs: test binary: %w", err)
	}
	var order []string
	for i, m := range mods {
		name := fmt.Sprintf("%02d-%s", i, filepath.Base(m))
		if err := add("modules/"+name, m, 0o644); err != nil {
			return fmt.Errorf("initramfs: module: %w", err)
		}
		order = append(order, name)
	}
	if err := cw.File("init", 0o755, []byte(initScript(order, opts.Args, marker))); err != nil {
		return err
	}
	if err := cw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func initScript(modules, args []string, marker string) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n/bin/busybox --install -s /bin\nexport PATH=/bin\n")
	b.WriteString("mount -t proc proc /proc\nmount -t sysfs sys /sys\nmount -t devtmpfs dev /dev\n")
	b.WriteString("mount -t tmpfs tmp /tmp\nmount -t tmpfs run /run\n")
	for _, m := range modules {
		fmt.Fprintf(&b, "insmod /modules/%s || echo 'insmod %s failed'\n", m, m)
	}
	b.WriteString("ip link set lo up\ncd /tmp\n/test")
	for _, a := range args {
		b.WriteString(" " + shellQuote(a))
	}
	b.WriteString("\nrc=$?\n")
	fmt.Fprintf(&b, "if [ $rc -eq 0 ]; then echo '%s PASS'; else echo \"%s FAIL exit=$rc\"; fi\n", marker, marker)
	b.WriteString("poweroff -f\n")
	return b.String()
}

func boot(ctx context.Context, opts Options, initrd, marker string) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", fmt.Sprint(opts.MemoryMB),
		"-nographic", "-no-reboot", "-nic", "none",
		"-kernel", opts.Kernel.Vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet")
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	verdict, output := scanConsole(stdout, marker, opts.Console)
	werr := cmd.Wait()
	res := &Result{Output: output, Duration: time.Since(start), Passed: verdict == "PASS"}
	switch {
	case res.Passed:
		return res, nil
	case verdict != "":
		return res, fmt.Errorf("%w: guest reported %s", ErrFailed, verdict)
	case ctx.Err() != nil:
		return res, fmt.Errorf("%w: no verdict within %s: %w", ErrFailed, opts.Timeout, ctx.Err())
	default:
		return res, fmt.Errorf("%w: no verdict line (qemu: %v)", ErrFailed, werr)
	}
}

// scanConsole copies the serial console (minus \r) to console and returns
// the first verdict after marker ("PASS" or "FAIL ...", "" when none) and
// the whole output.
func scanConsole(r io.Reader, marker string, console io.Writer) (verdict, output string) {
	var out strings.Builder
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.ReplaceAll(sc.Text(), "\r", "")
		out.WriteString(line + "\n")
		if console != nil {
			fmt.Fprintln(console, line)
		}
		if rest, ok := strings.CutPrefix(line, marker+" "); ok && verdict == "" {
			verdict = rest
		}
	}
	return verdict, out.String()
}
