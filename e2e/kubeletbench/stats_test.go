package kubeletbench

import (
	"testing"
	"time"
)

func msList(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	thirty := make([]int, 30)
	for i := range thirty {
		thirty[i] = 30 - i // 30..1, unsorted on purpose
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample is every percentile", msList(7), 99, 7 * time.Millisecond},
		{"p50 of 30 is the 15th", msList(thirty...), 50, 15 * time.Millisecond},
		{"p99 of 30 is the slowest", msList(thirty...), 99, 30 * time.Millisecond},
		{"p50 of 4 is the 2nd", msList(40, 10, 30, 20), 50, 20 * time.Millisecond},
		{"p100 is the max", msList(3, 9, 1), 100, 9 * time.Millisecond},
		{"tiny p is the min", msList(3, 9, 1), 0.1, 1 * time.Millisecond},
		{"p99 of 200 is the 198th", msList(seq(200)...), 99, 198 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]time.Duration(nil), tc.in...)
			if got := Percentile(tc.in, tc.p); got != tc.want {
				t.Fatalf("Percentile(p%v) = %v, want %v", tc.p, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Fatal("Percentile reordered its input")
				}
			}
		})
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}
