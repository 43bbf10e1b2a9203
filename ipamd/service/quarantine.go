package service

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"

	"github.com/underpool/underpool/ipamd/store"
)

// Reasons of the Warning events a pool gets when an address found in use on the wire is
// released rather than quarantined (store/quarantine.go says why quarantine is bounded).
const (
	ReasonIPConflict      = "IPConflict"
	ReasonConflictSpoofer = "ConflictSpoofer"
	ReasonQuarantineFull  = "QuarantineFull"
)

// Reasons of underpool_ipamd_quarantine_refused_total.
const (
	RefusedSpoofer = "spoofer"
	RefusedFull    = "full"
)

// quarantine frees an address another host answered for and keeps it out of allocation
// for a while, visible on the pool's status and as an event, within the pool's bounds.
// A MAC judged a spoofer or proxy (it answered for more than QuarantineLimits.PerMAC
// addresses of the pool, seen by this node or in the pool's status) quarantines nothing
// more for QuarantineFor after its last answer: its addresses are released as by a DEL.
// The ADD that met the conflict fails either way (the plugin says so), and its retry
// gets another address.
//
// Its errors wrap the store's, so a free whose commit window closed is told apart.
func (s *Service) quarantine(ctx context.Context, f store.Free, mac string) error {
	pool, addr := f.Pool, f.Addr
	now := s.now()
	if spoofer, newly := s.spoofers.answered(pool, mac, addr, now, s.QuarantineFor, s.QuarantineLimits.PerMAC); spoofer {
		return s.releaseSpoofed(ctx, f, mac, newly)
	}
	until := now.Add(s.QuarantineFor)
	res, err := s.Pools.Quarantine(ctx, f, mac, until, s.QuarantineLimits)
	if err != nil {
		return fmt.Errorf("quarantining %s in pool %s: %w", addr, pool, err)
	}
	switch res.Outcome {
	case store.QuarantineSpoofer:
		newly := s.spoofers.judge(pool, mac, now, s.QuarantineFor)
		s.reportSpoofer(ctx, pool, addr, mac, newly, res.ByMAC+1)
	case store.QuarantineFull:
		s.Metrics.QuarantineRefused.WithLabelValues(pool, RefusedFull).Inc()
		s.Log.Warn("address in use on the wire; the pool's quarantine is full, so it is released instead",
			zap.String("pool", pool), zap.String("ip", addr.String()), zap.String("answeredBy", mac),
			zap.Int("quarantined", res.Held), zap.Int("limit", res.Cap))
		s.poolEvent(ctx, pool, corev1.EventTypeWarning, ReasonQuarantineFull, "%s is in use on the wire (answered by %s), but the pool already keeps %d addresses in quarantine, its limit "+
			"(--quarantine-max-share of its addresses, at least --quarantine-floor): released, not quarantined, so conflicts cannot drain the pool. "+
			"Many hosts answer for this pool's addresses: check the segment for static addresses inside spec.ips", addr, mac, res.Held)
	default:
		s.Log.Warn("address in use on the wire; quarantined", zap.String("pool", pool), zap.String("ip", addr.String()),
			zap.String("answeredBy", mac), zap.Time("until", until))
		s.poolEvent(ctx, pool, corev1.EventTypeWarning, ReasonIPConflict, "%s is in use on the wire (answered by %s); kept out of allocation until %s",
			addr, mac, until.Format(time.RFC3339))
	}
	s.Metrics.Spoofers.set(s.spoofers.count(now, s.QuarantineFor))
	return nil
}

// releaseSpoofed frees an address a judged spoofer answered for, as a DEL would.
func (s *Service) releaseSpoofed(ctx context.Context, f store.Free, mac string, newly bool) error {
	if err := s.Pools.Release(ctx, f); err != nil {
		return fmt.Errorf("freeing %s in pool %s: %w", f.Addr, f.Pool, err)
	}
	s.reportSpoofer(ctx, f.Pool, f.Addr, mac, newly, 0)
	s.Metrics.Spoofers.set(s.spoofers.count(s.now(), s.QuarantineFor))
	return nil
}

// reportSpoofer counts, logs and (once per judgement) records on the pool an answer of a
// MAC judged a spoofer or proxy; answered is how many addresses it was seen answering
// for (0: known before).
func (s *Service) reportSpoofer(ctx context.Context, pool string, addr netip.Addr, mac string, newly bool, answered int) {
	s.Metrics.QuarantineRefused.WithLabelValues(pool, RefusedSpoofer).Inc()
	s.Log.Warn("address in use on the wire, answered by a MAC that answers for many of the pool's addresses; released, not quarantined",
		zap.String("pool", pool), zap.String("ip", addr.String()), zap.String("answeredBy", mac), zap.Bool("newlyJudged", newly))
	if !newly {
		return
	}
	if answered == 0 {
		answered = s.spoofers.answers(pool, mac)
	}
	s.poolEvent(ctx, pool, corev1.EventTypeWarning, ReasonConflictSpoofer, "%s answers for %d addresses of this pool (the latest %s): a proxy-ARP router or a host spoofing the segment, not a holder of one address. "+
		"Its answers quarantine nothing more for %s after the last one: the addresses are released so the pool is not drained, and ADDs that meet it still fail and retry. "+
		"Find it (ip neigh | grep -i %s) and turn proxy ARP off on the segment, or, if it really holds these addresses, add them to spec.excludeIPs", mac, answered, addr, s.QuarantineFor, mac)
}

// spooferMemory is this node's judgement of the MACs that answer conflict probes, per
// pool, across requests: which addresses each answered for lately, and which it judged
// spoofers. It complements the pool status (which every node writes, but which stops
// recording a MAC once the bounds refuse it), and forgets a MAC QuarantineFor after its
// last answer.
type spooferMemory struct {
	mu     sync.Mutex
	macs   map[poolMAC]*macAnswers
	pruned time.Time
}

type poolMAC struct{ pool, mac string }

type macAnswers struct {
	addrs   map[netip.Addr]time.Time // answered for, and when last
	spoofer bool
	last    time.Time
}

// maxRemembered bounds the memory: a neighbour inventing MACs must not grow ipamd. Past
// it new MACs are not remembered, and the pool status' bounds still hold.
const maxRemembered = 4096

// answered records that mac answered for addr, and says whether mac is a spoofer now:
// judged before, or seen answering for more than perMAC addresses (newly then).
func (m *spooferMemory) answered(pool, mac string, addr netip.Addr, now time.Time, window time.Duration, perMAC int) (spoofer, newly bool) {
	if mac == "" || perMAC <= 0 {
		return false, false // an IPv6 conflict whose MAC was not learnt, or no judgement asked
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now, window)
	key := poolMAC{pool, strings.ToLower(mac)}
	rec := m.macs[key]
	if rec == nil {
		if len(m.macs) >= maxRemembered {
			return false, false
		}
		if m.macs == nil {
			m.macs = map[poolMAC]*macAnswers{}
		}
		rec = &macAnswers{addrs: map[netip.Addr]time.Time{}}
		m.macs[key] = rec
	}
	rec.last = now
	if rec.spoofer {
		return true, false // its addresses no longer matter: at most perMAC+1 are kept
	}
	rec.addrs[addr] = now
	if len(rec.addrs) > perMAC {
		rec.spoofer = true
		return true, true
	}
	return false, false
}

// judge marks mac a spoofer on the pool status' evidence; it says whether that is new.
func (m *spooferMemory) judge(pool, mac string, now time.Time, window time.Duration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now, window)
	key := poolMAC{pool, strings.ToLower(mac)}
	rec := m.macs[key]
	if rec == nil {
		if len(m.macs) >= maxRemembered {
			return true // not remembered: report it, the status refuses it anyway
		}
		if m.macs == nil {
			m.macs = map[poolMAC]*macAnswers{}
		}
		rec = &macAnswers{addrs: map[netip.Addr]time.Time{}}
		m.macs[key] = rec
	}
	rec.last = now
	newly := !rec.spoofer
	rec.spoofer = true
	return newly
}

// answers is how many addresses of pool mac was seen answering for lately.
func (m *spooferMemory) answers(pool, mac string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rec := m.macs[poolMAC{pool, strings.ToLower(mac)}]; rec != nil {
		return len(rec.addrs)
	}
	return 0
}

// count is, per pool, the MACs judged spoofers and not yet forgotten.
func (m *spooferMemory) count(now time.Time, window time.Duration) map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now, window)
	out := map[string]int{}
	for key, rec := range m.macs {
		if rec.spoofer {
			out[key.pool]++
		}
	}
	return out
}

// pruneLocked forgets what is older than window, at most once a second: under a flood
// of conflicts the memory holds up to maxRemembered MACs.
func (m *spooferMemory) pruneLocked(now time.Time, window time.Duration) {
	if now.Sub(m.pruned) < time.Second && !now.Before(m.pruned) {
		return
	}
	m.pruned = now
	for key, rec := range m.macs {
		for a, at := range rec.addrs {
			if now.Sub(at) > window {
				delete(rec.addrs, a)
			}
		}
		if now.Sub(rec.last) > window {
			delete(m.macs, key)
		}
	}
}

// spooferGauge is underpool_ipamd_conflict_spoofers: a pool's series goes once no MAC is
// judged there any more.
type spooferGauge struct {
	vec *prometheus.GaugeVec

	mu    sync.Mutex
	pools map[string]bool
}

func (g *spooferGauge) set(byPool map[string]int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for pool := range g.pools {
		if byPool[pool] == 0 {
			g.vec.DeleteLabelValues(pool)
			delete(g.pools, pool)
		}
	}
	for pool, n := range byPool {
		if g.pools == nil {
			g.pools = map[string]bool{}
		}
		g.pools[pool] = true
		g.vec.WithLabelValues(pool).Set(float64(n))
	}
}

// Vec is the gauge vector, for tests.
func (g *spooferGauge) Vec() *prometheus.GaugeVec { return g.vec }
