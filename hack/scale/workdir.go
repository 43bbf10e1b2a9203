package main

import (
	"os"

	"github.com/underpool/underpool/tests/harness"
)

// stopper collects what a run started, to stop it in reverse order and remove the run's
// work directory, on return and on an interrupt alike.
type stopper struct {
	work  string
	stops []func()
}

// newStopper makes the run's work directory (prefix names it) and arms the interrupt.
func newStopper(prefix string) (*stopper, error) {
	work, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	s := &stopper{work: work}
	harness.StopOnInterrupt(s.stopAll)
	return s, nil
}

// add registers a stop, run before the ones added earlier.
func (s *stopper) add(stop func()) { s.stops = append(s.stops, stop) }

func (s *stopper) stopAll() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	os.RemoveAll(s.work)
}
