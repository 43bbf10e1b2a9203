package allocator

import (
	"fmt"
	"net/netip"
	"strings"
)

// A ReservedIP lists single addresses and inclusive ranges ("a", "a-b") of any pool. Each
// entry stands alone: one that is wrong spoils only itself, never the others (a reserved
// router address must stay reserved beside a typo). And reading fails closed: what an
// entry clearly names is reserved even when it is written wrongly.
//
//   - a reversed range ("10.0.0.30-10.0.0.20") reserves the addresses between its ends;
//   - an IPv4-mapped IPv6 address (::ffff:10.0.0.10) reserves the IPv4 address, and the
//     IPv6 one too wherever an IPv6 pool holds it (allocator treats it as that pool's);
//   - a zone (fe80::1%eth0) is dropped;
//   - what does not parse, or mixes IPv4 and IPv6, reserves nothing: no address is named.
//
// Each of these is also an EntryError, for the webhook to refuse and the controller to
// report: the API refuses such entries, but objects written before the rules, or while
// the webhook was not registered, must not unreserve anything.

// ReservedRange is an inclusive range of one family.
type ReservedRange struct{ Lo, Hi netip.Addr }

// EntryError says what is wrong with one entry of a list and how to write it.
type EntryError struct {
	Field   string // e.g. spec.ips
	Index   int
	Problem string
	Fix     string
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("%s[%d]: %s: %s", e.Field, e.Index, e.Problem, e.Fix)
}

// ParseReservations reads every entry of field (a ReservedIP's spec.ips) into ranges;
// errs name each entry that is not a plain address or ordered range of one family, the
// ranges still hold what those entries clearly name (see above).
func ParseReservations(field string, entries []string) (ranges []ReservedRange, errs []*EntryError) {
	for i, entry := range entries {
		got, problem, fix := parseReservation(strings.TrimSpace(entry))
		ranges = append(ranges, got...)
		if problem != "" {
			errs = append(errs, &EntryError{Field: field, Index: i, Problem: problem, Fix: fix})
		}
	}
	return ranges, errs
}

// ClipReservations returns the offsets of prefix that the entries reserve, and the bad
// entries; a bad entry never keeps a good one from being reserved.
func ClipReservations(prefix netip.Prefix, entries []string) (RunSet, []*EntryError) {
	ranges, errs := ParseReservations("spec.ips", entries)
	return Clip(prefix, ranges), errs
}

// Clip returns the offsets of prefix the ranges cover; ranges of the other family or
// outside the prefix are skipped (a ReservedIP names addresses of many pools).
func Clip(prefix netip.Prefix, ranges []ReservedRange) RunSet {
	var s RunSet
	first, last := prefix.Masked().Addr(), lastAddr(prefix)
	for _, r := range ranges {
		lo, hi := r.Lo, r.Hi
		if lo.Is4() != first.Is4() || hi.Less(first) || last.Less(lo) {
			continue
		}
		if lo.Less(first) {
			lo = first
		}
		if last.Less(hi) {
			hi = last
		}
		s.AddRun(Run{offsetIn(prefix, lo), offsetIn(prefix, hi)})
	}
	return s
}

const plainForms = "write an address (10.250.1.10) or an inclusive range (10.250.1.10-10.250.1.20)"

// parseReservation reads one trimmed entry: what it reserves, and when it is not plain,
// what is wrong and the fix.
func parseReservation(entry string) (ranges []ReservedRange, problem, fix string) {
	loText, hiText, isRange := strings.Cut(entry, "-")
	if !isRange {
		hiText = loText
	}
	lo, err1 := netip.ParseAddr(strings.TrimSpace(loText))
	hi, err2 := netip.ParseAddr(strings.TrimSpace(hiText))
	if err1 != nil || err2 != nil {
		return nil, fmt.Sprintf("%q is neither an IP address nor a range", entry), plainForms
	}
	zoned := lo.Zone() != "" || hi.Zone() != ""
	lo, hi = lo.WithZone(""), hi.WithZone("")
	mapped := lo.Is4In6() || hi.Is4In6()
	if lo.Unmap().Is4() != hi.Unmap().Is4() {
		return nil, fmt.Sprintf("range %s mixes IPv4 and IPv6", entry), "write one entry per family"
	}
	reversed := hi.Unmap().Less(lo.Unmap())
	ranges = readings(lo, hi)
	plain := func(lo, hi netip.Addr) string {
		if !isRange {
			return lo.String()
		}
		return lo.String() + "-" + hi.String()
	}
	switch {
	case mapped:
		return ranges, fmt.Sprintf("%s is an IPv4-mapped IPv6 address, which reserves the IPv4 address", entry),
			"write " + plain(ordered(lo.Unmap(), hi.Unmap()))
	case zoned:
		return ranges, fmt.Sprintf("%s carries an interface zone, which addresses of a pool never have", entry),
			"write " + plain(ordered(lo, hi))
	case reversed:
		return ranges, fmt.Sprintf("range %s is reversed", entry), "write " + plain(hi, lo)
	}
	return ranges, "", ""
}

// readings are the ranges an entry of one family (after unmapping) reserves, in order:
// the IPv4 one for mapped ends, and the literal IPv6 one too when both ends are IPv6.
func readings(lo, hi netip.Addr) []ReservedRange {
	var out []ReservedRange
	if lo.Unmap().Is4() {
		a, b := ordered(lo.Unmap(), hi.Unmap())
		out = append(out, ReservedRange{a, b})
	}
	if lo.Is6() && hi.Is6() {
		a, b := ordered(lo, hi)
		out = append(out, ReservedRange{a, b})
	}
	return out
}

func ordered(a, b netip.Addr) (netip.Addr, netip.Addr) {
	if b.Less(a) {
		return b, a
	}
	return a, b
}
