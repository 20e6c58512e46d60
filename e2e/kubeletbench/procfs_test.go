package kubeletbench

import (
	"os"
	"strings"
	"testing"
)

func TestStatusKB(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr string
	}{
		{"kB to bytes", "Name:\tkubelet\nVmPeak:\t  900 kB\nVmRSS:\t   58236 kB\nRssAnon:\t 40000 kB\n", 58236 * 1024, ""},
		{"no VmRSS (zombie)", "Name:\tkubelet\nState:\tZ (zombie)\n", 0, "no VmRSS"},
		{"VmRSSx is another key", "VmRSSx:\t 1 kB\n", 0, "no VmRSS"},
		{"unknown unit", "VmRSS:\t 12 MB\n", 0, "unexpected value"},
		{"not a number", "VmRSS:\t x kB\n", 0, "VmRSS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := statusKB(tc.in, "VmRSS")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestParseCPUTicks(t *testing.T) {
	// Fields 14 and 15 (utime, stime) are 120 and 30.
	tail := " S 1 100 100 0 -1 4194560 5000 0 0 0 120 30 0 0 20 0 12 0 4242 1000000 9000 18446744073709551615"
	tests := []struct {
		name    string
		in      string
		want    uint64
		wantErr string
	}{
		{"plain name", "4242 (kubelet)" + tail, 150, ""},
		{"name with spaces and parens", "4242 (a b) (c))" + tail, 150, ""},
		{"truncated", "4242 (kubelet) S 1 100", 0, "fields after the command name"},
		{"no name", "4242 kubelet S", 0, "no ')'"},
		{"bad number", "4242 (kubelet) S 1 100 100 0 -1 4194560 5000 0 0 0 x 30 0", 0, "field 14"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCPUTicks(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// The parsers must agree with the kernel's real files, not only with the samples above.
func TestReadProcSelf(t *testing.T) {
	// Burn a little CPU so utime+stime cannot be zero.
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i % 7
	}
	_ = x
	s, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSBytes < 1<<20 || s.RSSBytes > 1<<34 {
		t.Fatalf("RSS %d bytes is not plausible for a Go test binary", s.RSSBytes)
	}
	if s.AnonBytes <= 0 || s.FileBytes <= 0 || s.AnonBytes+s.FileBytes > s.RSSBytes {
		t.Fatalf("RSS split anon %d + file %d does not fit RSS %d", s.AnonBytes, s.FileBytes, s.RSSBytes)
	}
	if s.CPUTicks == 0 {
		t.Fatal("no CPU ticks after a busy loop")
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Fatal("ReadProc of a pid that cannot exist: no error")
	}
}
