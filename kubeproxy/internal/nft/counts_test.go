package nft

import (
	"math/rand/v2"
	"testing"
)

// TestCountsMatchesAMap drives the table and a plain map with the same
// random operations, on a small key space so keys collide, share users,
// wrap around the table's end and are removed from the middle of runs.
func TestCountsMatchesAMap(t *testing.T) {
	for _, tc := range []struct {
		name string
		hint int
		keys uint64
	}{
		{"empty start, few keys", 0, 50},
		{"presized, many keys", 1000, 5000},
		{"keys near 0 and the top", 0, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			c := newCounts(tc.hint)
			want := map[uint64]int{}
			key := func() uint64 {
				k := rng.Uint64N(tc.keys)
				if tc.name == "keys near 0 and the top" && k%2 == 1 {
					return ^k // the top of the range lands in the last slots
				}
				return k * 0x9e3779b97f4a7c15
			}
			for i := range 200000 {
				k := key()
				if rng.IntN(2) == 0 {
					if first := c.inc(k); first != (want[k] == 0) {
						t.Fatalf("op %d: inc(%x) first=%v, had %d users", i, k, first, want[k])
					}
					want[k]++
					continue
				}
				last, ok := c.dec(k)
				if ok != (want[k] > 0) || last != (want[k] == 1) {
					t.Fatalf("op %d: dec(%x) = last %v ok %v, had %d users", i, k, last, ok, want[k])
				}
				if want[k] > 0 {
					if want[k]--; want[k] == 0 {
						delete(want, k)
					}
				}
			}
			if c.len() != len(want) {
				t.Fatalf("len %d, want %d", c.len(), len(want))
			}
			for k := range want {
				if !c.has(k) {
					t.Fatalf("lost %x", k)
				}
			}
		})
	}
}
