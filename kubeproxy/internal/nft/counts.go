package nft

import "math/bits"

// counts counts the users of 64-bit fingerprints in 8 bytes a slot: an
// open-addressing table with linear probing and backward-shift deletion
// (no tombstones), plus a side map for the few fingerprints with more than
// one user. At 30k services x 10 endpoints the model references ~700k
// elements; a Go map[uint64]int32 spends ~27 bytes on each (16-byte slots,
// as a value smaller than the key is padded to it), this ~11.
type counts struct {
	// slots hold fingerprints; 0 marks an empty slot (fingerprint 0 is
	// stored as 1).
	slots []uint64
	n     int
	// extra holds the users beyond the first, for fingerprints shared by
	// several users (a cluster IP of a multi-port service, the hairpin pair
	// of an endpoint behind several services).
	extra map[uint64]int32
}

// newCounts sizes the table for about hint fingerprints.
func newCounts(hint int) *counts {
	c := &counts{extra: map[uint64]int32{}}
	if hint > 0 {
		c.slots = make([]uint64, hint+hint/2+16)
	}
	return c
}

func (c *counts) len() int { return c.n }

// home is a fingerprint's preferred slot: the fingerprint scaled onto the
// table (any size works, so the table grows by half, not by doubling).
func (c *counts) home(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(c.slots)))
	return int(hi)
}

// find returns h's slot, or the empty slot where it would go.
func (c *counts) find(h uint64) (int, bool) {
	i := c.home(h)
	for {
		switch c.slots[i] {
		case h:
			return i, true
		case 0:
			return i, false
		}
		if i++; i == len(c.slots) {
			i = 0
		}
	}
}

func fingerprint(h uint64) uint64 { return max(h, 1) }

// has reports whether h has a user.
func (c *counts) has(h uint64) bool {
	if c.n == 0 {
		return false
	}
	_, ok := c.find(fingerprint(h))
	return ok
}

// inc adds a user of h and reports whether it is the first.
func (c *counts) inc(h uint64) bool {
	h = fingerprint(h)
	if (c.n+1)*4 > len(c.slots)*3 {
		c.grow()
	}
	i, ok := c.find(h)
	if ok {
		c.extra[h]++
		return false
	}
	c.slots[i] = h
	c.n++
	return true
}

// dec removes a user of h and reports whether it was the last; ok is false
// when h had none.
func (c *counts) dec(h uint64) (last, ok bool) {
	h = fingerprint(h)
	if c.n == 0 {
		return false, false
	}
	i, ok := c.find(h)
	if !ok {
		return false, false
	}
	if e := c.extra[h]; e > 0 {
		if e == 1 {
			delete(c.extra, h)
		} else {
			c.extra[h] = e - 1
		}
		return false, true
	}
	c.remove(i)
	c.n--
	return true, true
}

// remove empties slot i and shifts back the entries after it that would
// otherwise no longer be found.
func (c *counts) remove(i int) {
	n := len(c.slots)
	j := i
	for {
		if j++; j == n {
			j = 0
		}
		h := c.slots[j]
		if h == 0 {
			break
		}
		// h may move to i unless its home lies cyclically in (i, j].
		k := c.home(h)
		if i <= j {
			if i < k && k <= j {
				continue
			}
		} else if i < k || k <= j {
			continue
		}
		c.slots[i] = h
		i = j
	}
	c.slots[i] = 0
}

func (c *counts) grow() {
	old := c.slots
	c.slots = make([]uint64, max(16, len(old)+len(old)/2))
	for _, h := range old {
		if h != 0 {
			i, _ := c.find(h)
			c.slots[i] = h
		}
	}
}
