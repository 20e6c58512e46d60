package ipvs

import "testing"

func TestFakeConformance(t *testing.T) {
	runConformance(t, func(t *testing.T) Kernel { return NewFake() })
}
