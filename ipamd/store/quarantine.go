package store

import (
	"context"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// Quarantine keeps an address another host answered for out of allocation, so the retry
// of the ADD that met it gets another one. Unbounded, one host answering ARP for the
// whole subnet (a proxy-ARP router, a hostile macvlan neighbour) would quarantine one
// address per failed ADD and drain the pool. So quarantining is bounded in the commit,
// against what the pool's status already holds (status.quarantined, written by every
// node), which makes the bounds hold cluster-wide:
//
//   - one MAC keeps at most PerMAC addresses of a pool in quarantine: a host answering for
//     more is a spoofer or a proxy, not a host holding a stale address;
//   - a pool keeps at most max(Floor, MaxShare of its usable addresses) in quarantine, and
//     never more than maxQuarantined (the status must stay far below etcd's object limit).
//
// An address the bounds refuse is released as by a DEL: the ADD that found it still fails
// (the plugin reports the conflict), the pod's retry gets another address, and the pool
// keeps serving. A late or repeated report is as harmless as before: the address is
// released in the same commit that decides, and only if this op's caller held it.

// maxQuarantined bounds status.quarantined whatever the pool's size: about 100 bytes an
// entry, so 100 KiB at most (an IPv6 /64's share would otherwise be unbounded).
const maxQuarantined = 1024

// QuarantineLimits bound what a pool keeps in quarantine (--quarantine-max-share,
// --quarantine-floor, --quarantine-per-mac). The zero value bounds only by maxQuarantined.
type QuarantineLimits struct {
	// MaxShare of the pool's usable addresses may be quarantined at once (0: no share limit).
	MaxShare float64
	// Floor: a pool may always quarantine this many, whatever its size.
	Floor int
	// PerMAC: a MAC that already holds this many of a pool's quarantined addresses
	// quarantines no more of them (0: no limit).
	PerMAC int
}

// Cap is how many addresses a pool of total usable addresses may keep in quarantine.
func (l QuarantineLimits) Cap(total int64) int {
	limit := maxQuarantined
	if l.MaxShare > 0 {
		share := l.MaxShare * float64(total)
		if share < float64(limit) {
			limit = int(share)
		}
		limit = max(limit, min(l.Floor, maxQuarantined))
	}
	return limit
}

// QuarantineOutcome says what a commit did with an address found in use on the wire.
type QuarantineOutcome int

const (
	// Quarantined: released and kept out of allocation until the time given.
	Quarantined QuarantineOutcome = iota
	// QuarantineFull: released only; the pool's quarantine is at its cap.
	QuarantineFull
	// QuarantineSpoofer: released only; the MAC already holds PerMAC quarantined
	// addresses of the pool: it answers for addresses it does not hold.
	QuarantineSpoofer
)

// QuarantineResult is the outcome and what the pool's status held when it was decided.
type QuarantineResult struct {
	Outcome QuarantineOutcome
	// Held is how many live quarantined addresses the pool held besides this one, and
	// ByMAC how many of them the same MAC answered for; Cap is the pool's limit.
	Held, ByMAC, Cap int
}

// quarantineBound travels with an opQuarantine: the limits in, the result out (written
// by the commit, read by the caller once the op is done).
type quarantineBound struct {
	limits QuarantineLimits
	result QuarantineResult
}

// Quarantine frees the address and, within limits, keeps it out of allocation until the
// given time: another host (mac, when known) answered for it on the wire. It is a free
// like Release, under the release protocol's rules (Free).
func (p *PoolCommitter) Quarantine(ctx context.Context, f Free, mac string, until time.Time, limits QuarantineLimits) (QuarantineResult, error) {
	b := &quarantineBound{limits: limits}
	r := p.submit(ctx, f.Pool, &poolOp{kind: opQuarantine, addr: f.Addr, mac: mac, until: until, bound: b,
		poolUID: f.PoolUID, sendBy: p.Window.SendBy(f.Evidence)})
	return b.result, r.err
}

// applyQuarantine is apply's opQuarantine: it releases the address and quarantines it
// when the bounds allow; it reports whether the state changed.
func applyQuarantine(st *allocator.State, op *poolOp, quarantined *[]v1.QuarantinedIP, blocked *allocator.RunSet) bool {
	released := st.Release(op.addr)
	var limits QuarantineLimits
	if op.bound != nil {
		limits = op.bound.limits
	}
	res := judgeQuarantine(*quarantined, op.addr.String(), op.mac, limits, st.Pool.TotalCount())
	if op.bound != nil {
		op.bound.result = res // the last attempt's decision is the one written
	}
	if res.Outcome != Quarantined {
		return released
	}
	*quarantined = append(withoutIP(*quarantined, op.addr.String()),
		v1.QuarantinedIP{IP: op.addr.String(), MAC: op.mac, Until: metav1.NewTime(op.until)})
	if o, ok := st.Pool.Offset(op.addr); ok {
		blocked.Add(o)
	}
	return true
}

// judgeQuarantine decides on one address against the pool's live quarantine. The
// address itself does not count: quarantining it again only moves its end.
func judgeQuarantine(live []v1.QuarantinedIP, ip, mac string, limits QuarantineLimits, total int64) QuarantineResult {
	res := QuarantineResult{Cap: limits.Cap(total)}
	for _, q := range live {
		if q.IP == ip {
			continue
		}
		res.Held++
		if mac != "" && strings.EqualFold(q.MAC, mac) {
			res.ByMAC++
		}
	}
	switch {
	case limits.PerMAC > 0 && mac != "" && res.ByMAC >= limits.PerMAC:
		res.Outcome = QuarantineSpoofer
	case res.Held >= res.Cap:
		res.Outcome = QuarantineFull
	}
	return res
}
