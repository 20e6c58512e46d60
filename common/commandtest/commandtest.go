// Package commandtest is test support for the node agents' command lines: it builds a real
// binary stamped the way the Makefile stamps releases, and checks what a user sees when it runs.
package commandtest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// The version and commit Build stamps into a binary; tests look for them in --version.
const (
	Version = "v9.8.7"
	Commit  = "0123456789abcdef"
)

const versionPkg = "github.com/kubenode/kubenode/common/version"

// Build builds the main package pkg (an import path) into a temporary directory with
// CGO_ENABLED=0 and -X stamping of Version and Commit, as the Makefile does, and returns the
// binary's path (named after pkg's last element).
func Build(t *testing.T, pkg string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build the binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), path.Base(pkg))
	build := exec.Command(goTool, "build", "-o", bin, "-ldflags",
		"-X "+versionPkg+".gitVersion="+Version+" -X "+versionPkg+".gitCommit="+Commit, pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// WriteFile writes data to a file called name in a temporary directory and returns its path.
func WriteFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ExpectExit runs bin with args and fails the test unless it exits with code and its standard
// error holds every one of wantStderr.
func ExpectExit(t *testing.T, bin string, args []string, code int, wantStderr ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case code == 0 && err != nil, code != 0 && (!errors.As(err, &exit) || exit.ExitCode() != code):
		t.Fatalf("%s %s: want exit code %d, got %v\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), code, err, stderr.String())
	}
	ContainsAll(t, "stderr", stderr.String(), wantStderr...)
}

// ContainsAll reports (without stopping the test) each of want that got lacks; what names got
// in the message.
func ContainsAll(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}
