package hostname

import (
	"os"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct {
		name, override, want, wantErr string
	}{
		{name: "override is lower-cased and trimmed", override: " Node-1 ", want: "node-1"},
		{name: "no override uses the host name", want: strings.ToLower(strings.TrimSpace(host))},
		{name: "blank override falls back to nothing usable", override: "   ", wantErr: "empty node name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(tc.override)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Resolve(%q) = %q, %v; want error %q", tc.override, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Resolve(%q) = %q, %v; want %q", tc.override, got, err, tc.want)
			}
		})
	}
}
