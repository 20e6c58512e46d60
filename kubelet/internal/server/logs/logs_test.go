package logs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Entry
		wantErr bool
	}{
		{"full", "2026-01-02T03:04:05.123456789Z stdout F hello world", Entry{Time: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC), Stream: "stdout", Text: []byte("hello world")}, false},
		{"partial stderr", "2026-01-02T03:04:05Z stderr P abc", Entry{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Stream: "stderr", Partial: true, Text: []byte("abc")}, false},
		{"empty text", "2026-01-02T03:04:05Z stdout F ", Entry{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Stream: "stdout", Text: []byte{}}, false},
		{"no text at all", "2026-01-02T03:04:05Z stdout F", Entry{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Stream: "stdout"}, false},
		{"tag with extra fields", "2026-01-02T03:04:05Z stdout F:x y", Entry{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Stream: "stdout", Text: []byte("y")}, false},
		{"text keeps spaces", "2026-01-02T03:04:05Z stdout F  a  b ", Entry{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Stream: "stdout", Text: []byte(" a  b ")}, false},
		{"bad time", "yesterday stdout F x", Entry{}, true},
		{"bad stream", "2026-01-02T03:04:05Z stdin F x", Entry{}, true},
		{"bad tag", "2026-01-02T03:04:05Z stdout X x", Entry{}, true},
		{"no fields", "garbage", Entry{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLine([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if !got.Time.Equal(tc.want.Time) || got.Stream != tc.want.Stream || got.Partial != tc.want.Partial || string(got.Text) != string(tc.want.Text) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// cri renders log lines: each "P:text" is partial, anything else full; line i is at base+i s.
func cri(lines ...string) string {
	var b strings.Builder
	for i, l := range lines {
		tag := "F"
		if rest, ok := strings.CutPrefix(l, "P:"); ok {
			tag, l = "P", rest
		}
		fmt.Fprintf(&b, "%s stdout %s %s\n", base.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), tag, l)
	}
	return b.String()
}

func ptr(n int64) *int64 { return &n }

func TestCopyOptions(t *testing.T) {
	// "tw" + "o" + "" is one line, "two", stamped with its first chunk's time.
	content := cri("one", "P:tw", "P:o", "", "three", "four", "garbage-free") + "not a cri line\n"
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"all, partials joined", Options{}, "one\ntwo\nthree\nfour\ngarbage-free\n"},
		{"tail 2", Options{TailLines: ptr(2)}, "four\ngarbage-free\n"},
		{"tail 0", Options{TailLines: ptr(0)}, ""},
		{"tail more than there is", Options{TailLines: ptr(100)}, "one\ntwo\nthree\nfour\ngarbage-free\n"},
		{"since drops older lines", Options{Since: base.Add(4 * time.Second)}, "three\nfour\ngarbage-free\n"},
		{"limit bytes cuts mid-line", Options{LimitBytes: ptr(6)}, "one\ntw"},
		{"limit bytes with tail", Options{TailLines: ptr(1), LimitBytes: ptr(100)}, "garbage-free\n"},
		{"timestamps use the first chunk's time", Options{TailLines: ptr(5), Timestamps: true},
			base.Format(time.RFC3339Nano) + " one\n" +
				base.Add(1*time.Second).Format(time.RFC3339Nano) + " two\n" +
				base.Add(4*time.Second).Format(time.RFC3339Nano) + " three\n" +
				base.Add(5*time.Second).Format(time.RFC3339Nano) + " four\n" +
				base.Add(6*time.Second).Format(time.RFC3339Nano) + " garbage-free\n"},
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := Copy(context.Background(), path, tc.opts, &out, Follow{}); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("got %q, want %q", out.String(), tc.want)
			}
		})
	}
}

func TestCopyMissingFile(t *testing.T) {
	err := Copy(context.Background(), filepath.Join(t.TempDir(), "nope.log"), Options{}, &bytes.Buffer{}, Follow{})
	if err == nil || !strings.Contains(err.Error(), "nope.log") {
		t.Fatalf("err = %v, want one naming the file", err)
	}
}

// syncBuffer is written by Copy's goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, buf *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for buf.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("output %q, want %q", buf.String(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFollowAcrossRotationUntilContainerStops(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	appendFile(t, path, cri("a", "b", "c"))
	var running sync.Mutex
	isRunning := true
	f := Follow{Poll: 10 * time.Millisecond, Running: func() bool {
		running.Lock()
		defer running.Unlock()
		return isRunning
	}}
	buf := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- Copy(context.Background(), path, Options{Follow: true, TailLines: ptr(1)}, buf, f) }()

	waitFor(t, buf, "c\n")
	appendFile(t, path, cri("d"))
	waitFor(t, buf, "c\nd\n")
	// A half-written line is held back until its newline arrives.
	appendFile(t, path, strings.TrimSuffix(cri("e"), "\n"))
	time.Sleep(50 * time.Millisecond)
	if got := buf.String(); got != "c\nd\n" {
		t.Fatalf("torn line leaked: %q", got)
	}
	appendFile(t, path, "\n")
	waitFor(t, buf, "c\nd\ne\n")

	// Rotation as the kubelet does it: rename away, the runtime reopens a new file at path. A
	// line written to the old file just before the rename must not be lost.
	appendFile(t, path, cri("f"))
	if err := os.Rename(path, path+".20260101-000000"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, cri("g", "h"))
	waitFor(t, buf, "c\nd\ne\nf\ng\nh\n")

	running.Lock()
	isRunning = false
	running.Unlock()
	appendFile(t, path, cri("last"))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end after the container stopped")
	}
	if got := buf.String(); got != "c\nd\ne\nf\ng\nh\nlast\n" {
		t.Errorf("final output %q", got)
	}
}

func TestFollowEndsWithContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	appendFile(t, path, cri("x"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	buf := &syncBuffer{}
	go func() { done <- Copy(ctx, path, Options{Follow: true}, buf, Follow{Poll: 10 * time.Millisecond}) }()
	waitFor(t, buf, "x\n")
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("follow ignored the cancelled context")
	}
}

func TestFollowAfterCopyTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	appendFile(t, path, cri("one", "two"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	buf := &syncBuffer{}
	go func() { _ = Copy(ctx, path, Options{Follow: true}, buf, Follow{Poll: 10 * time.Millisecond}) }()
	waitFor(t, buf, "one\ntwo\n")
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	appendFile(t, path, cri("three"))
	waitFor(t, buf, "one\ntwo\nthree\n")
}
