//go:build !ipvskernel

package ipvs

import (
	"errors"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
)

// The build host's kernel has no IPVS: start-up must fail with a message
// naming the missing feature, not succeed and program nothing (which is what
// moby/ipvs alone would do).
func TestNewFailsWithoutIPVS(t *testing.T) {
	if _, err := netlink.GenlFamilyGet("IPVS"); err == nil {
		t.Skip("this kernel has IPVS; the test needs one without it (the build host's); the VM tests cover IPVS kernels")
	}
	_, err := New(Config{}, zap.NewNop())
	if !errors.Is(err, ErrNoIPVS) {
		t.Fatalf("New on a kernel without IPVS: err = %v, want ErrNoIPVS", err)
	}
	for _, want := range []string{"IPVS", "--proxy-mode=nftables"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
