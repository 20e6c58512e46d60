package cm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckSwap(t *testing.T) {
	const header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
	cases := []struct {
		name       string
		swaps      *string // nil: no /proc/swaps at all
		failSwapOn bool
		wantErr    []string
	}{
		{"no swap", ptr(header), true, nil},
		{"swap file on", ptr(header + "/swapfile                               file\t\t1048572\t\t0\t\t-2\n"), true, []string{"failSwapOn: false", "/swapfile"}},
		{"two devices", ptr(header + "/dev/sda2 partition 100 0 -2\n/dev/zram0 partition 100 0 100\n"), true, []string{"/dev/sda2, /dev/zram0"}},
		{"swap on but allowed", ptr(header + "/swapfile file 100 0 -2\n"), false, nil},
		{"kernel without swap support", nil, true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "swaps")
			if tc.swaps != nil {
				if err := os.WriteFile(path, []byte(*tc.swaps), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := CheckSwap(path, tc.failSwapOn)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("err = %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
