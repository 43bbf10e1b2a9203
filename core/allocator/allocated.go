package allocator

import (
	"fmt"
	"net/netip"
)

// ParseAllocated reads a pool's status.allocated like ParseRunSet, and refuses a set that
// names an offset outside the pool's subnet (prefix): "1-400000" on a /24 parses, but no
// address of the pool lies there, and whoever trusted it would track 400,000 addresses
// (or 2^32 for a typo like "0-4294967295") and could never free them. The check is one
// comparison, never an enumeration: the runs are sorted, so the last one's end is the
// highest offset. A status refused here is corrupt: hand nothing out of it, iterate
// nothing of it, until an operator repairs it.
func ParseAllocated(prefix netip.Prefix, text string) (RunSet, error) {
	set, err := ParseRunSet(text)
	if err != nil {
		return RunSet{}, err
	}
	if runs := set.Runs(); len(runs) > 0 {
		last := lastOffset(prefix.Masked())
		if hi := runs[len(runs)-1].Hi; hi > last {
			return RunSet{}, fmt.Errorf("offset %d lies outside subnet %s, whose offsets are 0-%d", hi, prefix.Masked(), last)
		}
	}
	return set, nil
}

// ParseAllocated is ParseAllocated for this pool's subnet.
func (p *PoolView) ParseAllocated(text string) (RunSet, error) { return ParseAllocated(p.Prefix, text) }
