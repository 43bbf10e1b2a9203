package simulation

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
)

// choice is one thing the scheduler may do at a step.
type choice struct {
	desc string
	do   func() string // returns what came of it, for the trace
	// quiet: doing it wakes no goroutine (a cache refresh, a change to the world), so
	// the next step need not wait for the goroutines to settle
	quiet bool
	// then runs after the step is logged (a released goroutine's next local steps)
	then func()
}

// category groups choices of one kind; the scheduler picks a category by weight, then one
// of its choices uniformly, so that many parked calls do not crowd out everything else.
type category struct {
	name    string
	weight  int
	choices []choice
}

// act takes one step: one choice, from every category that has any.
func (s *sim) act() {
	cats := s.categories()
	total := 0
	for _, c := range cats {
		if len(c.choices) > 0 {
			total += c.weight
		}
	}
	r := s.rng.IntN(total)
	for _, c := range cats {
		if len(c.choices) == 0 {
			continue
		}
		if r -= c.weight; r < 0 {
			ch := c.choices[s.rng.IntN(len(c.choices))]
			out := ch.do()
			s.quiet = ch.quiet
			s.logf("%s: %s", ch.desc, out)
			if ch.then != nil {
				ch.then()
			}
			return
		}
	}
}

func (s *sim) categories() []category {
	room := s.inFlight() < maxOps
	cats := []category{
		{"release", 60, s.releaseChoices(false)},
		{"in-flight", 8, s.releaseChoices(true)},
		{"clock", 12, s.clockChoices()},
		{"refresh", 5, s.refreshChoices()},
	}
	if room {
		cats = append(cats,
			category{"add", 8, s.addChoices(false)},
			category{"del", 7, s.delChoices(false)},
			// the runtime repeating an ADD or a DEL it already sent
			category{"replay", 2, append(s.addChoices(true), s.delChoices(true)...)},
			category{"gc", 1, s.gcChoices()},
			category{"protect", 10, s.protectChoices()},
		)
	}
	pools, poolsBack := s.poolChoices()
	nodes, nodesBack := s.nodeChoices()
	kills, pauses, starts := s.processChoices()
	cats = append(cats,
		category{"loops", 12, s.loopChoices()},
		category{"pods", 7, s.podChoices()},
		category{"plugin timeouts", 6, s.giveUpChoices()},
		// what goes away is rare, what comes back soon: a pool or node deleted, a
		// process killed, is a disruption the run then recovers from
		category{"delete pools", 1, pools},
		category{"create pools", 4, poolsBack},
		category{"gone pools' states", 1, s.collectChoices()},
		category{"delete nodes", 1, nodes},
		category{"create nodes", 4, nodesBack},
		category{"kill", 1, kills},
		category{"pause", 1, pauses},
		category{"start", 6, starts},
	)
	return cats
}

func (s *sim) releaseChoices(orphans bool) []choice {
	var out []choice
	now := s.clock.Now()
	for _, c := range s.gates.sorted() {
		if c.orphan != orphans || now.Before(c.stalled) {
			continue
		}
		var f fate
		out = append(out, choice{desc: fmt.Sprintf("%s %s %s", c.key(), c.kind, c.desc), quiet: orphans, do: func() string {
			f = s.chooseFate(c)
			res := s.release(c, f)
			if f != fateOK {
				return f.String() + ": " + res
			}
			return res
		}, then: func() {
			if f == fateOK && !orphans {
				s.follow(c.who)
			}
		}})
	}
	return out
}

// follow lets a released goroutine run on through its informer reads, local steps and
// API reads (mostly: now and then another goroutine gets between them), so that an
// operation costs about as many steps as it makes writes.
func (s *sim) follow(who string) {
	for s.err == nil {
		if err := s.settle(); err != nil {
			s.err = err
			return
		}
		var next *call
		now := s.clock.Now()
		for _, c := range s.gates.sorted() {
			if c.who == who && !c.orphan && !now.Before(c.stalled) && c.kind != apiWrite {
				next = c
			}
		}
		// through informer reads and local steps mostly, through API reads often; a
		// write is always a step of its own, where anything may get in between
		chance := 92
		if next != nil && next.kind == apiRead {
			chance = 60
		}
		if next == nil || s.rng.IntN(100) >= chance {
			return
		}
		f := s.chooseFate(next) // ok, or stalled
		s.logf("%s %s %s: %s", next.key(), next.kind, next.desc, s.release(next, f))
		if f != fateOK {
			return
		}
	}
}

// clockStep is mostly small: operations take a few seconds, and now and then a jump
// lets windows close, graces pass and the sweeper's phases come due.
func (s *sim) clockStep() time.Duration {
	w := time.Duration(s.window)
	steps := []time.Duration{time.Second, time.Second, 2 * time.Second, 2 * time.Second, 5 * time.Second, 5 * time.Second,
		w / 4, w / 4, w / 2, w / 2, w, 2 * w, 4 * w}
	return steps[s.rng.IntN(len(steps))]
}

func (s *sim) clockChoices() []choice {
	return []choice{{desc: "clock", do: func() string {
		d := s.clockStep()
		// a jump stops where a loop's round comes due: loops run on their own timers,
		// and a jump over several rounds would skip what they do in between
		if next, ok := s.nextLoopRound(); ok && next.Sub(s.clock.Now()) < d {
			d = next.Sub(s.clock.Now())
		}
		s.clock.Step(d)
		return "+" + d.String()
	}}}
}

func (s *sim) refreshChoices() []choice {
	var out []choice
	for _, a := range s.live() {
		out = append(out, choice{desc: "refresh cache of " + a.name, quiet: true, do: func() string {
			s.refresh(a)
			return "synced"
		}})
	}
	return out
}

// live lists the actors that run, in a stable order.
func (s *sim) live() []*actor {
	var out []*actor
	for _, n := range nodeNames {
		if a := s.ipamds[n]; a != nil && !a.isDead() {
			out = append(out, a)
		}
	}
	if s.controller != nil && !s.controller.isDead() {
		out = append(out, s.controller)
	}
	return out
}

// serving is node's ipamd when it answers requests.
func (s *sim) serving(node string) *actor {
	if a := s.ipamds[node]; a != nil && !a.isDead() && a.ready {
		return a
	}
	return nil
}

func (s *sim) addChoices(again bool) []choice {
	var out []choice
	for _, sb := range s.world.allSandboxes() {
		a := s.serving(sb.pod.node)
		if a == nil || sb.gone || sb.addBusy || sb.delBusy || (sb.adds > 0) != again {
			continue
		}
		// the runtime repeats an ADD only for the sandbox it still runs (after a restart
		// of its own); a sandbox it tore down gets no ADD from it again
		if again && (sb.running || sb.wantDel || !s.faults || sb.pod.latest() != sb) {
			continue
		}
		what := "ADD"
		switch {
		case sb.adds > 0:
			what = "ADD again"
		case !sb.pod.exists:
			what = "late ADD"
		}
		out = append(out, choice{desc: fmt.Sprintf("%s %s of %s (%s)", what, sb.id, sb.pod.name, sb.pod.uid), do: func() string {
			s.add(a, sb)
			return "sent to " + a.name
		}})
	}
	return out
}

func (s *sim) add(a *actor, sb *sandbox) {
	sb.adds++
	sb.abandoned = false
	sb.addBusy, sb.addSent = true, s.clock.Now()
	p := sb.pod
	req := &rpc.AllocateRequest{ContainerID: sb.id, IfName: ifName, Network: network,
		Pod: rpc.Pod{Namespace: namespace, Name: p.name, UID: p.uid}, IPv4Pools: p.pools}
	s.startOp(a, "add-"+sb.id+"-", requestTimeout, func(ctx context.Context) (any, error) {
		return a.svc.Allocate(ctx, req)
	}, func(o *op) {
		sb.addBusy = false
		resp, _ := o.result.(*rpc.AllocateResponse)
		if sb.abandoned {
			return // the runtime gave up on it already
		}
		inTime := s.clock.Now().Sub(o.started) <= pluginTimeout
		if o.err == nil && !a.isDead() && inTime && resp != nil && len(resp.IPs) == 1 && !sb.gone && !sb.wantDel {
			sb.running, sb.addr = true, resp.IPs[0].Address
			return
		}
		if !sb.abandoned {
			s.addFailed(sb)
		}
	})
}

// addFailed is the runtime's answer to a failed ADD: it tears the sandbox down (DEL)
// and, for a pod that still runs, makes another.
func (s *sim) addFailed(sb *sandbox) {
	p := sb.pod
	if !sb.gone {
		sb.wantDel = true
	}
	if p.exists && !p.terminating && p.latest() == sb {
		nb := s.world.newSandbox(p)
		s.logf("ADD %s failed for the runtime; DEL to follow, new sandbox %s", sb.id, nb.id)
	}
}

// giveUpChoices are the plugin's timeouts: an ADD ipamd has not answered within
// ipam.timeout has failed for the runtime, though ipamd works on (its requests are
// detached from the connection): what it does later is a late ADD.
func (s *sim) giveUpChoices() []choice {
	var out []choice
	now := s.clock.Now()
	for _, sb := range s.world.allSandboxes() {
		if sb.addBusy && !sb.abandoned && now.Sub(sb.addSent) > pluginTimeout {
			out = append(out, choice{quiet: true, desc: "the plugin gives up on ADD " + sb.id + " of " + sb.pod.name, do: func() string {
				sb.abandoned = true
				s.addFailed(sb)
				return "failed for the runtime"
			}})
		}
	}
	return out
}

func (s *sim) delChoices(again bool) []choice {
	var out []choice
	now := s.clock.Now()
	for _, sb := range s.world.allSandboxes() {
		a := s.serving(sb.pod.node)
		// the runtime sends DEL once the ADD answered or its plugin gave up waiting
		if a == nil || sb.delBusy || (sb.addBusy && now.Sub(sb.addSent) <= pluginTimeout) {
			continue
		}
		what := ""
		switch {
		case sb.wantDel && !sb.gone && !again:
			what = "DEL"
		case sb.gone && sb.adds > 0 && s.faults && again:
			what = "DEL again"
		default:
			continue
		}
		out = append(out, choice{desc: fmt.Sprintf("%s %s of %s (%s)", what, sb.id, sb.pod.name, sb.pod.uid), do: func() string {
			s.del(a, sb)
			return "sent to " + a.name
		}})
	}
	return out
}

func (s *sim) del(a *actor, sb *sandbox) {
	sb.delBusy, sb.running = true, false
	p := sb.pod
	req := &rpc.ReleaseRequest{ContainerID: sb.id, IfName: ifName, Pod: rpc.Pod{Namespace: namespace, Name: p.name, UID: p.uid}}
	s.startOp(a, "del-"+sb.id+"-", requestTimeout, func(ctx context.Context) (any, error) {
		return nil, a.svc.Release(ctx, req)
	}, func(o *op) {
		sb.delBusy = false
		if o.err == nil && !a.isDead() {
			sb.gone, sb.wantDel = true, false
		}
	})
}

func (s *sim) gcChoices() []choice {
	var out []choice
	for _, n := range nodeNames {
		a := s.serving(n)
		if a == nil {
			continue
		}
		out = append(out, choice{desc: "CNI GC on " + n, do: func() string {
			var valid []rpc.Attachment
			for _, id := range s.validFor(n) {
				valid = append(valid, rpc.Attachment{ContainerID: id, IfName: ifName})
			}
			s.startOp(a, "gc", requestTimeout, func(ctx context.Context) (any, error) {
				return a.svc.GC(ctx, &rpc.GCRequest{Network: network, Valid: valid}, false)
			}, nil)
			return fmt.Sprintf("valid %d attachments", len(valid))
		}})
	}
	return out
}

// loopChoices are the loops whose interval has passed: each ipamd's recycling, the
// controller's gone-node recycling and orphan sweep (every --gc-interval,
// --recycle-interval, --orphan-interval: a minute), each round starting an interval after
// the last one ended.
func (s *sim) loopChoices() []choice {
	var out []choice
	now := s.clock.Now()
	due := func(a *actor, loop string) bool {
		return !a.busy[loop] && !now.Before(a.nextRound(loop, s.interval))
	}
	for _, n := range nodeNames {
		if a := s.serving(n); a != nil && due(a, "recycle") {
			out = append(out, choice{desc: "recycling round of " + a.name, do: func() string { s.recycle(a); return "started" }})
		}
		if a := s.serving(n); a != nil && due(a, "expire") {
			out = append(out, choice{desc: "prefetch expiry of " + a.name, do: func() string { s.expire(a); return "started" }})
		}
	}
	if c := s.controller; c != nil && !c.isDead() {
		if due(c, "sweep") {
			out = append(out, choice{desc: "orphan sweep of " + c.name, do: func() string { s.sweep(c); return "started" }})
		}
		if due(c, "gone-nodes") {
			out = append(out, choice{desc: "gone nodes' recycling round of " + c.name, do: func() string { s.recycleGoneNodes(c); return "started" }})
		}
	}
	return out
}

// nextLoopRound is the earliest round of a loop not due yet.
func (s *sim) nextLoopRound() (time.Time, bool) {
	var next time.Time
	now := s.clock.Now()
	consider := func(a *actor, loop string) {
		if t := a.nextRound(loop, s.interval); !a.busy[loop] && t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, n := range nodeNames {
		if a := s.serving(n); a != nil {
			consider(a, "recycle")
			consider(a, "expire")
		}
	}
	if c := s.controller; c != nil && !c.isDead() {
		consider(c, "sweep")
		consider(c, "gone-nodes")
	}
	return next, !next.IsZero()
}

// expire frees the addresses an ipamd prefetched that no ADD took (ipamd's ticker).
func (s *sim) expire(a *actor) {
	a.begin("expire")
	s.startOp(a, "expire", 0, func(ctx context.Context) (any, error) {
		a.svc.Pools.(gatedPools).ExpirePrefetched(ctx)
		return nil, nil
	}, func(*op) { a.end("expire", s.clock.Now()) })
}

func (s *sim) recycle(a *actor) {
	a.begin("recycle")
	s.startOp(a, "recycle", 0, func(ctx context.Context) (any, error) {
		return a.svc.Recycle(ctx, s.clock.Now(), s.recycleGrace)
	}, func(*op) { a.end("recycle", s.clock.Now()) })
}

// protectChoices are the pool finalizer's reconciles: the controller's watch brings
// each soon after a pool needs one (it lacks the finalizer, or is deleted and empty).
func (s *sim) protectChoices() []choice {
	c := s.controller
	if c == nil || c.isDead() {
		return nil
	}
	var out []choice
	contents := s.contents()
	for i := range contents.pools {
		p := &contents.pools[i]
		name := p.Name
		due := (p.DeletionTimestamp == nil && !slices.Contains(p.Finalizers, v1.PoolProtection)) ||
			(p.DeletionTimestamp != nil && contents.stateOf(p).AllocatedIPCount == 0)
		if due && !c.busy["pool-"+name] {
			out = append(out, choice{desc: "pool protection reconcile of " + name, do: func() string { s.finalize(c, name); return "started" }})
		}
	}
	return out
}

func (s *sim) sweep(c *actor) {
	c.begin("sweep")
	ctx, cancel := context.WithCancel(context.Background())
	s.sweepCancel = cancel
	s.startOp(c, "sweep", 0, func(context.Context) (any, error) {
		n, err := c.sweeper.Sweep(ctx, s.clock.Now(), s.orphanGrace)
		return freed(n), err
	}, func(*op) {
		c.end("sweep", s.clock.Now())
		cancel()
		s.sweepCancel = nil
	})
}

type freed int

func (n freed) String() string { return fmt.Sprintf("freed %d", int(n)) }

// recycleGoneNodes is the controller's round (controller.goneNodeRecycler.round): the
// nodes from its cache, then the gone nodes' Endpoints judged by recycling's rules.
func (s *sim) recycleGoneNodes(c *actor) {
	c.begin("gone-nodes")
	s.startOp(c, "gone-nodes", 0, func(ctx context.Context) (any, error) {
		var list corev1.NodeList
		if err := (cacheReader{s: s, a: c}).List(ctx, &list); err != nil {
			return nil, err
		}
		exists := map[string]bool{}
		for _, n := range list.Items {
			exists[n.Name] = true
		}
		return c.recycler.RecycleGoneNodes(ctx, s.clock.Now(), s.recycleGrace, func(n string) bool { return exists[n] })
	}, func(*op) { c.end("gone-nodes", s.clock.Now()) })
}

func (s *sim) finalize(c *actor, pool string) {
	c.begin("pool-" + pool)
	s.startOp(c, "protect-"+pool+"-", 0, func(ctx context.Context) (any, error) {
		_, err := c.finalizer.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: pool}})
		return nil, err
	}, func(*op) { c.end("pool-"+pool, s.clock.Now()) })
}

func (s *sim) podChoices() []choice {
	var out []choice
	w := s.world
	for _, name := range podNames {
		p := w.current(name)
		if p == nil || !p.exists {
			if strings.HasPrefix(name, stsName+"-") && !w.ordinalWanted(name) {
				continue
			}
			out = append(out, choice{quiet: true, desc: "create pod " + name, do: func() string {
				node := nodeNames[s.rng.IntN(len(nodeNames))]
				pools := poolLists[s.rng.IntN(len(poolLists))]
				if strings.HasPrefix(name, stsName+"-") {
					pools = []string{"p1", "p2"}
				}
				return s.createPod(name, node, pools)
			}})
			continue
		}
		if !p.terminating {
			out = append(out, choice{quiet: true, desc: "delete pod " + name + " (" + p.uid + ") gracefully", do: func() string { return s.terminate(p) }})
			if sb := p.latest(); sb != nil && sb.adds > 0 && !sb.addBusy {
				out = append(out, choice{quiet: true, desc: "sandbox of " + p.uid + " dies", do: func() string { return s.replaceSandbox(p, s.rng.IntN(2) == 0) }})
			}
		}
		what := "force-delete"
		if p.terminating {
			what = "remove terminated"
		}
		out = append(out, choice{quiet: true, desc: what + " pod " + name + " (" + p.uid + ")", do: func() string { return s.removePod(p) }})
	}
	target := int32(3) - w.replicas // 2 <-> 1
	out = append(out, choice{quiet: true, desc: fmt.Sprintf("scale StatefulSet %s to %d", stsName, target), do: func() string { return s.scaleStatefulSet(target) }})
	return out
}

func (s *sim) poolChoices() (gone, back []choice) {
	c := s.contents()
	// one pool disrupted at a time: with both gone, every ADD fails
	disrupted := len(c.pools) < len(poolNames)
	for i := range c.pools {
		disrupted = disrupted || c.pools[i].DeletionTimestamp != nil
	}
	for _, name := range poolNames {
		var pool *v1.IPPool
		for i := range c.pools {
			if c.pools[i].Name == name {
				pool = c.pools[i].DeepCopy()
			}
		}
		switch {
		case pool == nil:
			back = append(back, choice{quiet: true, desc: "create pool " + name + " again", do: func() string {
				s.incarnations["pool-"+name]++
				obj := poolObj(name, s.incarnations["pool-"+name])
				if err := s.api.Create(context.Background(), obj); err != nil {
					return "failed: " + err.Error()
				}
				return "uid " + string(obj.UID) + ", unprotected until the controller reconciles it"
			}})
		case !disrupted && pool.DeletionTimestamp == nil && c.stateOf(pool).AllocatedIPCount <= 1:
			// a pool nearly empty: a pool in use would only keep every ADD from it
			// failing until its last pod went
			gone = append(gone, choice{quiet: true, desc: "delete pool " + name + " (" + string(pool.UID) + ")", do: func() string {
				if err := s.api.Delete(context.Background(), pool); err != nil {
					return "failed: " + err.Error()
				}
				if err := s.api.Get(context.Background(), client.ObjectKey{Name: name}, pool); err == nil {
					return fmt.Sprintf("deleting, held by its finalizer (%d allocated)", s.contents().stateOf(pool).AllocatedIPCount)
				}
				return "gone at once"
			}})
		}
	}
	return gone, back
}

// collectChoices are the controller's deletion of gone pools' states: a PoolAllocation
// whose pool incarnation is gone is deleted (guarded by the version judged), a commit
// window or more after the pool went (controller/goneallocations.go) - some time after
// that, or never before the pool's name is used again, so that ipamd and the controller
// meet an earlier incarnation's state. The states have no owner reference: Kubernetes'
// garbage collector would delete them at once (v1.AllocationOf says why that is unsafe).
func (s *sim) collectChoices() []choice {
	c := s.contents()
	if s.poolGoneAt == nil {
		s.poolGoneAt = map[string]time.Time{}
	}
	var out []choice
	for i := range c.allocs {
		a := c.allocs[i].DeepCopy()
		live := false
		for _, p := range c.pools {
			live = live || p.UID == a.PoolUID
		}
		if live {
			continue
		}
		gone, seen := s.poolGoneAt[string(a.PoolUID)]
		if !seen {
			s.poolGoneAt[string(a.PoolUID)] = s.clock.Now()
			continue
		}
		if s.clock.Now().Before(gone.Add(time.Duration(s.window))) {
			continue
		}
		out = append(out, choice{quiet: true, desc: "controller deletes PoolAllocation " + a.Name + " of gone " + string(a.PoolUID), do: func() string {
			return errText(s.api.Delete(context.Background(), a, client.Preconditions{ResourceVersion: &a.ResourceVersion}))
		}})
	}
	return out
}

func (s *sim) nodeChoices() (gone, back []choice) {
	c := s.contents()
	for _, name := range nodeNames {
		exists := false
		for _, n := range c.nodes {
			exists = exists || n.Name == name
		}
		if !exists {
			back = append(back, choice{quiet: true, desc: "register Node " + name + " again", do: func() string {
				return errText(s.api.Create(context.Background(), nodeObj(name)))
			}})
			continue
		}
		gone = append(gone, choice{quiet: true, desc: "delete Node object " + name + " (the machine may run on)", do: func() string {
			return errText(s.api.Delete(context.Background(), nodeObj(name)))
		}})
	}
	return gone, back
}

func (s *sim) processChoices() (kills, pauses, starts []choice) {
	hold := func(a *actor) func() string {
		return func() string {
			d := s.stall()
			return fmt.Sprintf("%d calls held back %v", s.pause(a, d), d)
		}
	}
	for _, n := range nodeNames {
		a := s.ipamds[n]
		if a != nil && !a.isDead() {
			kills = append(kills, choice{desc: "kill " + a.name, do: func() string { s.kill(a); return "dead" }})
			pauses = append(pauses, choice{quiet: true, desc: "pause " + a.name, do: hold(a)})
		} else {
			starts = append(starts, choice{desc: "start ipamd on " + n, do: func() string { return s.restart(n) }})
		}
	}
	if c := s.controller; c != nil && !c.isDead() {
		if s.sweepCancel != nil {
			kills = append(kills, choice{desc: c.name + " loses its lease mid-sweep", do: func() string {
				s.sweepCancel()
				s.cancelParked()
				s.kill(c)
				return "new leader " + s.newController().name
			}})
		}
		kills = append(kills, choice{desc: "kill " + c.name, do: func() string {
			s.kill(c)
			return "new leader " + s.newController().name
		}})
		pauses = append(pauses, choice{quiet: true, desc: "pause " + c.name, do: hold(c)})
	}
	return kills, pauses, starts
}

// observePools tells the sweeper each pool's allocation state in the controller's cache
// (the PoolAllocation informer's handler, with the pool of the same name), and forgets
// the pools gone from it (the IPPool informer's delete handler).
func (s *sim) observePools(c *actor) {
	var list v1.IPPoolList
	var allocs v1.PoolAllocationList
	if err := c.cache.List(context.Background(), &list); err != nil {
		panic(err)
	}
	if err := c.cache.List(context.Background(), &allocs); err != nil {
		panic(err)
	}
	seen := map[string]string{}
	for i := range list.Items {
		for j := range allocs.Items {
			if allocs.Items[j].Name == list.Items[i].Name {
				c.sweeper.Observe(&list.Items[i], &allocs.Items[j])
			}
		}
		seen[list.Items[i].Name] = string(list.Items[i].UID)
	}
	names := make([]string, 0, len(c.poolUIDs))
	for name := range c.poolUIDs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if uid := c.poolUIDs[name]; seen[name] != uid {
			c.sweeper.Forget(types.UID(uid))
		}
	}
	c.poolUIDs = seen
}
