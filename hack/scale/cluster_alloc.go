package main

// The allocation-churn phase of --cluster (issue 20, "measure first"): one pool that every
// ipamd watches, fragmented before the ipamds start, while pods are added and deleted on a
// few ipamd nodes at a steady rate through the real underpool-ipam plugin. It measures what
// one node's allocations cost every other node (IPPool and PoolAllocation watch events and
// bytes: none, since the allocation state is in a PoolAllocation no node watches), the
// apiserver (CPU, egress) and the allocating nodes (conflicts, latency).

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// allocOptions size the allocation churn; rate 0 skips it.
type allocOptions struct {
	rate     float64       // allocations (ADD then DEL of one pod) started per second, all nodes together
	window   time.Duration // how long allocations are started for
	ipamds   int           // the first this many ipamds allocate; the others only watch
	inflight int           // plugin processes running at once; a start that finds none free waits
	poolSize int           // addresses in the pool; every other one is held before the run
}

func defaultAllocOptions() allocOptions {
	return allocOptions{rate: 20, window: time.Minute, ipamds: 10, inflight: 40, poolSize: 4096}
}

// count is how many allocations the phase starts.
func (a allocOptions) count() int { return int(a.rate*a.window.Seconds() + 0.5) }

func (a allocOptions) validate(ipamds, nodes int) error {
	if a.rate == 0 {
		return nil
	}
	free := a.poolSize / 2
	switch {
	case a.rate < 0 || a.count() < 1:
		return fmt.Errorf("--alloc-rate %g for --alloc-window %s starts no allocation: raise either (--alloc-rate 0 skips the phase)", a.rate, a.window)
	case a.ipamds < 1 || a.ipamds > ipamds:
		return fmt.Errorf("--alloc-ipamds %d: must be between 1 and --ipamds %d", a.ipamds, ipamds)
	case a.inflight < 1:
		return fmt.Errorf("--alloc-inflight %d: must be >= 1", a.inflight)
	case nodes <= ipamds:
		return fmt.Errorf("--nodes %d <= --ipamds %d: the allocation pool's held addresses belong to pods on nodes without an ipamd; "+
			"raise --nodes or set --alloc-rate 0", nodes, ipamds)
	case a.poolSize < 2 || a.poolSize > maxPoolAddresses:
		return fmt.Errorf("--alloc-pool-size %d: must be between 2 and %d", a.poolSize, maxPoolAddresses)
	case free < a.count():
		return fmt.Errorf("--alloc-pool-size %d leaves %d addresses free (every other one is held), fewer than the %d allocations "+
			"(--alloc-rate x --alloc-window): raise --alloc-pool-size so the pool's cursor never wraps during the run", a.poolSize, free, a.count())
	}
	return nil
}

// fragmented is the allocation state of a pool of size addresses (offsets 1..size) with
// every other one held, the odd offsets: the held offsets and state.allocated, one run per
// address ("1,3,5,..."), the worst case for the string's length at that occupancy.
func fragmented(size int) (held []uint32, allocated string) {
	var b strings.Builder
	for off := 1; off <= size; off += 2 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(off))
		held = append(held, uint32(off))
	}
	return held, b.String()
}

// allocPoolName is the pool every ipamd watches and the allocating ones allocate from; it
// lives after the Endpoints' pools and the churn pool (see address).
const (
	allocPoolName  = "scale-alloc"
	allocNamespace = "scale-alloc"
)

func (o clusterOptions) allocPoolIndex() int { return o.pools + 1 }
