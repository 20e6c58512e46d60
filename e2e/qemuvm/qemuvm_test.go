package qemuvm

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCPIOReadableByBusybox(t *testing.T) {
	var buf bytes.Buffer
	cw := &cpioWriter{w: &buf}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cw.Dir("bin"))
	must(cw.File("bin/hello", 0o755, []byte("#!/bin/sh\necho hi\n")))
	must(cw.File("odd", 0o644, []byte("abc"))) // forces padding
	must(cw.Symlink("bin/sh", "hello"))
	must(cw.Close())

	dir := t.TempDir()
	cmd := exec.Command("busybox", "cpio", "-i", "-d", "-H", "newc")
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio -i: %v: %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "bin/hello"))
	if err != nil || string(b) != "#!/bin/sh\necho hi\n" {
		t.Fatalf("bin/hello = %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "bin/hello")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("bin/hello mode = %v, %v", fi.Mode(), err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "odd")); err != nil || string(b) != "abc" {
		t.Fatalf("odd = %q, %v", b, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || target != "hello" {
		t.Fatalf("bin/sh -> %q, %v", target, err)
	}
}

func TestShellQuote(t *testing.T) {
	for _, s := range []string{"plain", "-test.run=^TestX$", "it's", `a "b" $c \d`, ""} {
		t.Run(s, func(t *testing.T) {
			out, err := exec.Command("busybox", "sh", "-c", "printf '%s' "+shellQuote(s)).Output()
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != s {
				t.Fatalf("quoted %q came back as %q", s, out)
			}
		})
	}
}

func TestScanConsole(t *testing.T) {
	const marker = "KUBENODE-QEMUVM-RESULT abc"
	tests := []struct {
		name, console, want string
	}{
		{"pass with CRLF", "boot\r\n" + marker + " PASS\r\n[ 3.1] reboot\r\n", "PASS"},
		{"fail", marker + " FAIL exit=1\n", "FAIL exit=1"},
		{"no marker", "kernel panic\n", ""},
		{"another run's marker", "KUBENODE-QEMUVM-RESULT zzz PASS\n", ""},
		{"first verdict wins", marker + " FAIL exit=2\n" + marker + " PASS\n", "FAIL exit=2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var echo bytes.Buffer
			got, out := scanConsole(strings.NewReader(tc.console), marker, &echo)
			if got != tc.want {
				t.Fatalf("verdict = %q, want %q", got, tc.want)
			}
			if strings.Contains(out, "\r") || echo.String() != out {
				t.Fatalf("output not cleaned or not echoed: %q / %q", out, echo.String())
			}
		})
	}
}

// TestResolveModulesOrder needs the cloud kernel; it fetches it into the
// cache like the VM run does (a no-op once cached).
func TestResolveModulesOrder(t *testing.T) {
	cache := os.Getenv("KUBENODE_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "kubenode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := FetchKernel(ctx, cache)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := ResolveModules(k.ModulesDir, []string{"nft_masq", "ip_vs_rr", "dummy"})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range mods {
		pos[strings.TrimSuffix(filepath.Base(m), ".ko")] = i
	}
	for _, before := range [][2]string{
		{"nf_conntrack", "ip_vs"}, {"ip_vs", "ip_vs_rr"}, {"nf_tables", "nft_masq"},
		{"nf_nat", "nft_masq"}, {"libcrc32c", "nf_conntrack"}, {"nf_defrag_ipv4", "nf_conntrack"},
	} {
		a, oka := pos[before[0]]
		b, okb := pos[before[1]]
		if !oka || !okb || a > b {
			t.Errorf("%s must load before %s; order %v", before[0], before[1], mods)
		}
	}
	if !slices.ContainsFunc(mods, func(m string) bool { return strings.HasSuffix(m, "/dummy.ko") }) {
		t.Errorf("dummy missing from %v", mods)
	}
	if _, err := ResolveModules(k.ModulesDir, []string{"no_such_module"}); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Fatalf("unknown module: err = %v, want it named", err)
	}
}

func TestBuildInitramfsNeedsKernelAndBinary(t *testing.T) {
	_, err := RunTestBinary(context.Background(), Options{})
	if err == nil {
		t.Fatal("RunTestBinary without kernel and binary succeeded")
	}
}
