package netplan

import (
	"hash/fnv"
	"strconv"
	"strings"
)

// DefaultTableBase is the first routing table number for per-interface tables: an
// interface named net1 gets table 101.
const DefaultTableBase = 100

// RulePriority is the priority of the "from <pod address> lookup <table>" rules: before
// the main table's 32766, so replies pick their interface's table first. The rules of
// different interfaces never overlap (one per address), so they can share a priority.
const RulePriority = 1000

// hashedTables is how many tables names other than netN spread over: wide enough that
// two such names of one pod meet about once in a million pairs (ADD detects that).
const hashedTables = 1 << 20

// TableFor numbers an interface's table from its whole name, so DEL and CHECK find it
// without saved state and two interfaces of one pod get different tables: netN (N below
// 1000, written without leading zeros) gets base+N unless that is one of the kernel's
// reserved tables (253 default, 254 main, 255 local); every other name gets base + 1000
// + a hash of the whole name, a range netN never reaches. Only two hashed names can meet;
// ADD refuses the second interface then rather than share the table.
func TableFor(ifName string, base int) int {
	if base <= 0 {
		base = DefaultTableBase
	}
	if n, ok := netIndex(ifName); ok && !reservedTable(base+n) {
		return base + n
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(ifName))
	return base + 1000 + int(h.Sum32()%hashedTables)
}

// netIndex is N of a name "netN" written canonically ("net1", not "net01" or "net+1",
// which would otherwise share net1's table).
func netIndex(ifName string) (int, bool) {
	digits, ok := strings.CutPrefix(ifName, "net")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 || n >= 1000 || strconv.Itoa(n) != digits {
		return 0, false
	}
	return n, true
}

func reservedTable(t int) bool { return t >= 253 && t <= 255 }
