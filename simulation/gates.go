package simulation

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// kind is what a gate stands for, which decides the fates the scheduler may give it.
type kind int

const (
	// apiRead and apiWrite are calls to the API: the scheduler may answer them normally,
	// refuse them, or (writes) apply them and lose the answer.
	apiRead kind = iota
	apiWrite
	// cacheRead is a read of an actor's informer cache; local is a step inside an actor
	// (a request entering a pool's commit queue). Both only proceed: they are gates so
	// that no two goroutines ever touch shared state at once.
	cacheRead
	local
)

func (k kind) String() string {
	return [...]string{"read", "write", "cache", "local"}[k]
}

// call is one parked gate: a goroutine waiting for the scheduler to let its API call (or
// local step) happen. The scheduler applies the call itself, on its own goroutine, so the
// API changes only in steps.
type call struct {
	actor *actor
	who   string // the goroutine's stable identity
	seq   int    // the goroutine's gate count: (who, seq) orders parked calls
	kind  kind
	desc  string
	// issued is the fake time the call was made: a write lands within half the commit
	// window of it or never (the apiserver's timeout and etcd's settling, store.Window)
	issued   time.Time
	deadline time.Time // the caller's context deadline (zero: none)
	ctx      context.Context
	// apply performs the call on the API; onCopy applies it to a copy of the caller's
	// object (for a call whose caller no longer waits, or whose answer is lost)
	apply func(onCopy bool) error
	reply chan error
	// orphan: nobody waits for the answer (the actor was killed, the context canceled);
	// a write may still land
	orphan bool
	// stalled: not to be let through before this fake time (a process descheduled, a
	// request stuck in the apiserver, an informer that stopped delivering)
	stalled time.Time
}

func (c *call) key() string { return fmt.Sprintf("%s#%03d", c.who, c.seq) }

// errKilled answers every gate of an actor that was killed: its process is gone.
var errKilled = apierrors.NewServiceUnavailable("simulation: this process was killed")

// gates is the parking lot and the goroutine registry.
type gates struct {
	sim *sim

	mu     sync.Mutex
	parked []*call
	ids    map[int64]string // goroutine id -> identity
	kids   map[string]int   // identity -> children registered
	seqs   map[string]int
	// fresh counts the goroutines registered since the last step: more than one child
	// of one parent in one step would make identities depend on arrival order
	fresh map[string]int
	wake  chan struct{}
}

func newGates(s *sim) *gates {
	return &gates{sim: s, ids: map[int64]string{}, kids: map[string]int{}, seqs: map[string]int{},
		fresh: map[string]int{}, wake: make(chan struct{}, 1)}
}

func (g *gates) notify() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// register names the calling goroutine, an operation the scheduler starts.
func (g *gates) register(name string) {
	id := currentID()
	g.mu.Lock()
	g.ids[id] = name
	g.mu.Unlock()
}

// identify returns the calling goroutine's identity. A goroutine the scheduler did not
// start (a pool queue's worker, a wait for a pool's finalizer) is named after the
// goroutine that created it and how many children that one had before: at most one
// goroutine is created per step (every creator reaches a gate before creating another),
// so the names do not depend on timing. Called with g.mu held.
func (g *gates) identifyLocked() string {
	id, parent := selfAndParent()
	if name, ok := g.ids[id]; ok {
		return name
	}
	p, ok := g.ids[parent]
	if !ok {
		panic(fmt.Sprintf("simulation: goroutine %d (created by goroutine %d) reached a gate, and neither is known", id, parent))
	}
	// descendants are numbered within the operation that started them: a chain of
	// goroutines (a queue worker waiting for a pool's finalizer, starting another worker)
	// keeps short names
	root, _, _ := strings.Cut(p, "~")
	g.kids[root]++
	g.fresh[p]++
	name := fmt.Sprintf("%s~%d", root, g.kids[root])
	g.ids[id] = name
	return name
}

// contact registers the calling goroutine without parking (the committer's jitter is
// the first thing a goroutine waiting for a pool's finalizer does).
func (g *gates) contact() {
	g.mu.Lock()
	g.identifyLocked()
	g.mu.Unlock()
}

// park blocks the calling goroutine until the scheduler lets its call happen, and
// returns the call's answer.
func (g *gates) park(ctx context.Context, a *actor, k kind, desc string, apply func(onCopy bool) error) error {
	if a.isDead() {
		return errKilled
	}
	if err := ctx.Err(); err != nil {
		return err // canceled (a lost lease): the request is never sent
	}
	now := g.sim.clock.Now()
	var deadline time.Time
	if d, ok := ctx.Deadline(); ok {
		if now.After(d) {
			return context.DeadlineExceeded // the client does not send what it no longer waits for
		}
		deadline = d
	}
	c := &call{actor: a, kind: k, desc: desc, issued: now, deadline: deadline, ctx: ctx, apply: apply, reply: make(chan error, 1),
		stalled: a.pausedUntil}
	g.mu.Lock()
	c.who = g.identifyLocked()
	g.seqs[c.who]++
	c.seq = g.seqs[c.who]
	g.parked = append(g.parked, c)
	g.mu.Unlock()
	g.notify()
	return <-c.reply
}

// sorted returns the parked calls in their stable order.
func (g *gates) sorted() []*call {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := append([]*call(nil), g.parked...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].who != out[j].who {
			return out[i].who < out[j].who
		}
		return out[i].seq < out[j].seq
	})
	return out
}

// park_ puts a call that was taken out back among the parked.
func (g *gates) park_(c *call) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.parked = append(g.parked, c)
}

func (g *gates) remove(c *call) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, p := range g.parked {
		if p == c {
			g.parked = append(g.parked[:i], g.parked[i+1:]...)
			return
		}
	}
}

// answer wakes the caller (unless it no longer waits).
func (g *gates) answer(c *call, err error) {
	if !c.orphan {
		c.orphan = true
		c.reply <- err
	}
}

// checkSpawns fails when one goroutine created two that were first seen in the same
// step: their names would depend on which reached a gate first.
func (g *gates) checkSpawns() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	defer clear(g.fresh)
	for p, n := range g.fresh {
		if n > 1 {
			return fmt.Errorf("goroutine %s created %d goroutines in one step: their names are not deterministic", p, n)
		}
	}
	return nil
}
