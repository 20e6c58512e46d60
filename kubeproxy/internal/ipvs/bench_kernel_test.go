//go:build ipvskernel

package ipvs

import (
	"fmt"
	"testing"

	"go.uber.org/zap"
)

func debugLogger(b *testing.B) *zap.Logger {
	l, err := zap.NewDevelopment()
	if err != nil {
		b.Fatal(err)
	}
	return l
}

var kernelBenchSizes = []int{1000, 10000}

// BenchmarkSyncKernel is BenchmarkSyncFake against the real kernel (in the
// VM): netlink IPVS, the dummy device and the nftables table.
func BenchmarkSyncKernel(b *testing.B) {
	for _, n := range kernelBenchSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			benchSync(b, n, func(b *testing.B) (*Backend, func() uint64) {
				ns := newNetNS(b)
				be, err := New(Config{NetNSPath: fmt.Sprintf("/proc/self/fd/%d", int(ns))}, debugLogger(b))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(be.Close)
				return be, nil
			})
		})
	}
}
