package gcpolicy

import (
	"runtime/debug"
	"testing"
)

func TestApply(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	tests := []struct {
		name        string
		percent     int
		gogc        string
		want        Applied
		wantInForce int
	}{
		{name: "no GOGC: the policy applies", percent: 50, want: Applied{Percent: 50}, wantInForce: 50},
		{name: "GOGC set: left alone", percent: 50, gogc: "200", want: Applied{Env: "200"}, wantInForce: 100},
		{name: "GOGC=off: left alone", percent: 50, gogc: "off", want: Applied{Env: "off"}, wantInForce: 100},
		{name: "blank GOGC counts as unset", percent: 70, gogc: " ", want: Applied{Percent: 70}, wantInForce: 70},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			got := Apply(tc.percent, func(k string) string {
				if k == "GOGC" {
					return tc.gogc
				}
				return ""
			})
			if got != tc.want {
				t.Errorf("Apply = %+v, want %+v", got, tc.want)
			}
			if inForce := debug.SetGCPercent(100); inForce != tc.wantInForce {
				t.Errorf("GC percent in force %d, want %d", inForce, tc.wantInForce)
			}
		})
	}
}
