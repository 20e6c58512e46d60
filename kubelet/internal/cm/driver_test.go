package cm

import (
	"strings"
	"testing"
)

func TestCheckCgroupDriver(t *testing.T) {
	tests := []struct {
		driver, wantErr string
	}{
		{"cgroupfs", ""},
		{"", ""},
		{"systemd", `cgroupDriver: "systemd" is not supported yet`},
		{"upstart", `cgroupDriver: unsupported value "upstart"`},
	}
	for _, tc := range tests {
		t.Run(tc.driver, func(t *testing.T) {
			err := CheckCgroupDriver(tc.driver)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
