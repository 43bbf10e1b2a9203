package netplan

import (
	"hash/fnv"
	"strconv"
)

// DefaultTableBase is the first routing table number for per-interface tables: an
// interface named net1 gets table 101, eth0 gets 100.
const DefaultTableBase = 100

// RulePriority is the priority of the "from <pod address> lookup <table>" rules: before
// the main table's 32766, so replies pick their interface's table first. The rules of
// different interfaces never overlap (one per address), so they can share a priority.
const RulePriority = 1000

// TableFor numbers an interface's table from its name so DEL and CHECK find it without
// saved state: base plus the name's trailing number (net1: base+1), or, for a name
// without one, base+1000 plus a hash of the name.
func TableFor(ifName string, base int) int {
	if base <= 0 {
		base = DefaultTableBase
	}
	i := len(ifName)
	for i > 0 && ifName[i-1] >= '0' && ifName[i-1] <= '9' {
		i--
	}
	if n, err := strconv.Atoi(ifName[i:]); err == nil && i < len(ifName) && n < 1000 {
		return base + n
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(ifName))
	return base + 1000 + int(h.Sum32()%1000)
}
