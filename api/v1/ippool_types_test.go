package v1

import (
	"math"
	"testing"
)

// The FREE and USED printer columns: quarantined addresses are used, the share is rounded
// down, and 100% is shown only when nothing is free.
func TestSetCounts(t *testing.T) {
	for _, c := range []struct {
		name             string
		total, allocated int64
		quarantined      int
		wantFree         int64
		wantUsage        string
	}{
		{"empty", 100, 0, 0, 100, "0%"},
		{"exact share", 100, 29, 0, 71, "29%"},
		{"quarantined count as used", 100, 40, 2, 58, "42%"},
		{"rounded down", 3, 2, 0, 1, "66%"},
		{"almost full stays below 100%", 1000, 999, 0, 1, "99%"},
		{"full", 10, 9, 1, 0, "100%"},
		{"no usable address", 0, 0, 0, 0, ""},
		{"more held than usable (a narrowed spec)", 5, 7, 0, 0, "100%"},
		{"huge pool", math.MaxInt64, math.MaxInt64 / 2, 0, math.MaxInt64 - math.MaxInt64/2, "49%"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := AllocationState{Quarantined: make([]QuarantinedIP, c.quarantined)}
			a.SetCounts(c.total, c.allocated)
			var s IPPoolStatus
			s.ShowCounts(&a)
			if s.TotalIPCount != c.total || s.AllocatedIPCount != c.allocated || s.FreeIPCount != c.wantFree || s.Usage != c.wantUsage ||
				s.QuarantinedIPCount != int64(c.quarantined) || !s.CountsEqual(&a) {
				t.Fatalf("got total %d allocated %d free %d usage %q quarantined %d, want free %d usage %q",
					s.TotalIPCount, s.AllocatedIPCount, s.FreeIPCount, s.Usage, s.QuarantinedIPCount, c.wantFree, c.wantUsage)
			}
		})
	}
}
