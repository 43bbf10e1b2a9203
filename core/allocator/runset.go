package allocator

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Run is an inclusive range of address offsets.
type Run struct{ Lo, Hi uint64 }

// RunSet is a set of offsets kept as sorted, non-overlapping, non-adjacent runs. Its size
// grows with fragmentation, not with the number of addresses, so a /16 that is fully
// allocated is one run and an IPv6 /64 is never enumerated.
type RunSet struct{ runs []Run }

// NewRunSet builds a set from runs in any order, merging overlaps.
func NewRunSet(runs ...Run) RunSet {
	var s RunSet
	for _, r := range runs {
		s.AddRun(r)
	}
	return s
}

// Runs returns the runs in ascending order; callers must not modify them.
func (s RunSet) Runs() []Run { return s.runs }

// Clone returns an independent copy.
func (s RunSet) Clone() RunSet { return RunSet{runs: append([]Run(nil), s.runs...)} }

// Empty reports whether the set holds nothing.
func (s RunSet) Empty() bool { return len(s.runs) == 0 }

// Count returns how many offsets the set holds, saturating at max uint64.
func (s RunSet) Count() uint64 {
	var n uint64
	for _, r := range s.runs {
		size := r.Hi - r.Lo + 1
		if size == 0 || n+size < n { // a full 2^64 run, or overflow
			return ^uint64(0)
		}
		n += size
	}
	return n
}

// find returns the index of the first run whose Hi >= x.
func (s RunSet) find(x uint64) int {
	return sort.Search(len(s.runs), func(i int) bool { return s.runs[i].Hi >= x })
}

// Contains reports whether x is in the set.
func (s RunSet) Contains(x uint64) bool {
	i := s.find(x)
	return i < len(s.runs) && s.runs[i].Lo <= x
}

// Add puts x into the set and reports whether it was absent.
func (s *RunSet) Add(x uint64) bool {
	if s.Contains(x) {
		return false
	}
	s.AddRun(Run{x, x})
	return true
}

// AddRun puts every offset of r into the set.
func (s *RunSet) AddRun(r Run) {
	if r.Hi < r.Lo {
		return
	}
	// first run that overlaps or touches r
	i := sort.Search(len(s.runs), func(i int) bool { return s.runs[i].Hi == ^uint64(0) || s.runs[i].Hi+1 >= r.Lo })
	j := i
	for j < len(s.runs) && (r.Hi == ^uint64(0) || s.runs[j].Lo <= r.Hi+1) {
		r.Lo = min(r.Lo, s.runs[j].Lo)
		r.Hi = max(r.Hi, s.runs[j].Hi)
		j++
	}
	s.runs = append(s.runs[:i], append([]Run{r}, s.runs[j:]...)...)
}

// Remove takes x out of the set and reports whether it was present.
func (s *RunSet) Remove(x uint64) bool {
	i := s.find(x)
	if i >= len(s.runs) || s.runs[i].Lo > x {
		return false
	}
	r := s.runs[i]
	switch {
	case r.Lo == x && r.Hi == x:
		s.runs = append(s.runs[:i], s.runs[i+1:]...)
	case r.Lo == x:
		s.runs[i].Lo++
	case r.Hi == x:
		s.runs[i].Hi--
	default:
		s.runs = append(s.runs[:i+1], append([]Run{{x + 1, r.Hi}}, s.runs[i+1:]...)...)
		s.runs[i].Hi = x - 1
	}
	return true
}

// Subtract returns s without the offsets in o.
func (s RunSet) Subtract(o RunSet) RunSet {
	var out []Run
	j := 0
	for _, r := range s.runs {
		lo := r.Lo
		for j < len(o.runs) && o.runs[j].Hi < lo {
			j++
		}
		k := j
		done := false
		for k < len(o.runs) && o.runs[k].Lo <= r.Hi {
			if o.runs[k].Lo > lo {
				out = append(out, Run{lo, o.runs[k].Lo - 1})
			}
			if o.runs[k].Hi >= r.Hi {
				done = true
				break
			}
			lo = o.runs[k].Hi + 1
			k++
		}
		if !done {
			out = append(out, Run{lo, r.Hi})
		}
	}
	return RunSet{runs: out}
}

// NextFree returns the first offset of s, at or after start and wrapping around, that is
// not in taken. Its cost grows with the runs of both sets, never with the address count.
func (s RunSet) NextFree(start uint64, taken RunSet) (uint64, bool) {
	if x, ok := s.nextFreeFrom(start, taken); ok {
		return x, true
	}
	if start == 0 {
		return 0, false
	}
	x, ok := s.nextFreeFrom(0, taken)
	return x, ok && x < start
}

func (s RunSet) nextFreeFrom(start uint64, taken RunSet) (uint64, bool) {
	for i := s.find(start); i < len(s.runs); i++ {
		x := max(s.runs[i].Lo, start)
		for x <= s.runs[i].Hi {
			j := taken.find(x)
			if j >= len(taken.runs) || taken.runs[j].Lo > x {
				return x, true
			}
			if taken.runs[j].Hi == ^uint64(0) {
				return 0, false
			}
			x = taken.runs[j].Hi + 1
		}
	}
	return 0, false
}

// String renders the set as "lo-hi,x,..." in decimal; ParseRunSet reads it back.
func (s RunSet) String() string {
	var b strings.Builder
	for i, r := range s.runs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(r.Lo, 10))
		if r.Hi != r.Lo {
			b.WriteByte('-')
			b.WriteString(strconv.FormatUint(r.Hi, 10))
		}
	}
	return b.String()
}

// ParseRunSet reads the form String writes.
func ParseRunSet(text string) (RunSet, error) {
	var s RunSet
	if text == "" {
		return s, nil
	}
	for _, part := range strings.Split(text, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			return RunSet{}, fmt.Errorf("bad offset %q in %q", lo, part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 64); err != nil || b < a {
				return RunSet{}, fmt.Errorf("bad offset range %q", part)
			}
		}
		s.AddRun(Run{a, b})
	}
	return s, nil
}
