package version

import (
	"strings"
	"testing"
)

func TestGetFillsEveryField(t *testing.T) {
	info := Get("kubelet")
	for name, v := range map[string]string{"version": info.Version, "commit": info.Commit, "date": info.BuildDate} {
		if v == "" {
			t.Errorf("%s is empty", name)
		}
	}
	if !strings.HasPrefix(info.String(), "kubelet ") {
		t.Errorf("String() = %q, want the component name first", info.String())
	}
}
