package allocator

import (
	"testing"
)

// FuzzRunSetMatchesAModel drives a RunSet and a plain map through the same operations:
// membership, counts, the next free offset and the text form must always agree, and the
// runs must stay sorted, disjoint and non-adjacent. Allocation correctness rests on it.
func FuzzRunSetMatchesAModel(f *testing.F) {
	f.Add([]byte{1, 5, 0, 7, 2, 5, 3, 1, 9, 4})
	f.Add([]byte{0, 0, 0, 1, 0, 2, 1, 1, 3, 0, 200})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var s RunSet
		model := map[uint64]bool{}
		for i := 0; i+1 < len(ops); i += 2 {
			x := uint64(ops[i+1] % 64)
			switch ops[i] % 4 {
			case 0:
				if s.Add(x) == model[x] {
					t.Fatalf("Add(%d) disagreed with the model", x)
				}
				model[x] = true
			case 1:
				if s.Remove(x) != model[x] {
					t.Fatalf("Remove(%d) disagreed with the model", x)
				}
				delete(model, x)
			case 2:
				hi := x + uint64(ops[i]%5)
				s.AddRun(Run{x, hi})
				for y := x; y <= hi; y++ {
					model[y] = true
				}
			case 3:
				usable := NewRunSet(Run{0, 70})
				got, ok := usable.NextFree(x, s)
				want, wantOK := uint64(0), false
				for k := uint64(0); k <= 70; k++ {
					y := (x + k) % 71
					if !model[y] {
						want, wantOK = y, true
						break
					}
				}
				if ok != wantOK || (ok && got != want) {
					t.Fatalf("NextFree(%d) = %d,%v; model says %d,%v (set %s)", x, got, ok, want, wantOK, s)
				}
			}
			checkRunSet(t, s, model)
		}
	})
}

func checkRunSet(t *testing.T, s RunSet, model map[uint64]bool) {
	t.Helper()
	if s.Count() != uint64(len(model)) {
		t.Fatalf("Count %d, model %d (%s)", s.Count(), len(model), s)
	}
	runs := s.Runs()
	for i, r := range runs {
		if r.Lo > r.Hi || (i > 0 && runs[i-1].Hi+1 >= r.Lo) {
			t.Fatalf("runs not sorted, disjoint and non-adjacent: %v", runs)
		}
		for y := r.Lo; y <= r.Hi; y++ {
			if !model[y] {
				t.Fatalf("%d in the set, not in the model (%s)", y, s)
			}
		}
	}
	back, err := ParseRunSet(s.String())
	if err != nil || back.String() != s.String() {
		t.Fatalf("text form %q does not round-trip: %v", s.String(), err)
	}
}
