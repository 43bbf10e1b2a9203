package simulation

import (
	"fmt"
	"time"
)

// converge settles a run: no more faults, every request answered, every node with an
// ipamd, the kubelets' pending DELs sent, terminated pods removed, and then, a window and
// more apart, rounds of every loop (recycling on each node and for gone nodes, pool
// protection, the orphan sweep) until the sweeper has had time for all its phases.
// Invariants are checked after every step here too.
func (s *sim) converge() error {
	s.faults = false
	s.logf("settling: no more faults")
	if err := s.drain(); err != nil {
		return err
	}
	for _, n := range nodeNames {
		if s.serving(n) == nil {
			s.step++
			s.logf("start ipamd on %s: %s", n, s.restart(n))
		}
	}
	if s.controller == nil || s.controller.isDead() {
		s.step++
		s.logf("new leader %s", s.newController().name)
	}
	if err := s.drain(); err != nil {
		return err
	}
	for _, sb := range s.world.allSandboxes() {
		if a := s.serving(sb.pod.node); a != nil && sb.wantDel && !sb.gone && !sb.delBusy {
			s.step++
			s.logf("DEL %s of %s (%s): the kubelet finishes", sb.id, sb.pod.name, sb.pod.uid)
			s.del(a, sb)
		}
	}
	if err := s.drain(); err != nil {
		return err
	}
	for _, p := range s.world.pods {
		if p.exists && p.terminating {
			s.step++
			s.logf("remove terminated pod %s (%s): %s", p.name, p.uid, s.removePod(p))
		}
	}
	// a window and more apart, for as long as a mark, a confirmation and a free take
	// after the longest grace
	rounds := int((s.orphanGrace+s.recycleGrace)/time.Duration(s.window)) + 8
	for round := range rounds {
		s.step++
		s.clock.Step(max(time.Duration(s.window), s.interval) + 5*time.Second)
		s.logf("settling round %d", round+1)
		for _, a := range s.live() {
			s.refresh(a)
		}
		for _, n := range nodeNames {
			if a := s.serving(n); a != nil {
				s.recycle(a)
			}
		}
		c := s.controller
		s.recycleGoneNodes(c)
		for _, name := range poolNames {
			s.finalize(c, name)
		}
		if err := s.drain(); err != nil {
			return err
		}
		s.refresh(c)
		s.sweep(c)
		if err := s.drain(); err != nil {
			return err
		}
	}
	return nil
}

// drain answers every parked call normally, in the stable order, and lets the clock run
// a second whenever operations wait on it, until nothing is in flight.
func (s *sim) drain() error {
	for i := 0; ; i++ {
		if i > 20000 {
			return fmt.Errorf("harness: still %d operations in flight after %d settling steps", s.inFlight(), i)
		}
		if err := s.settle(); err != nil {
			return err
		}
		if s.err != nil {
			return s.err
		}
		if err := s.check(); err != nil {
			return err
		}
		parked := s.gates.sorted()
		if len(parked) > 0 {
			c := parked[0]
			s.step++
			f := s.chooseFate(c)
			s.logf("%s %s %s: %s", c.key(), c.kind, c.desc, s.release(c, f))
			continue
		}
		if s.inFlight() == 0 {
			return nil
		}
		// operations wait on the clock (a backoff) or on a cache to catch up
		s.step++
		s.clock.Step(time.Second)
		for _, a := range s.live() {
			s.refresh(a)
		}
		s.logf("clock: +1s, caches synced (operations wait)")
	}
}
