package simulation

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/ipamd/store"
	"github.com/underpool/underpool/rpc"
)

const (
	requestTimeout = time.Minute // ipamd's bound on one socket request (server.requestTimeout)
	maxOps         = 6           // operations in flight at once
)

// timing is the configuration a seed runs with: the commit window and the graces and
// intervals the flags set, in proportion to it as the defaults are (a window of 40 s, a
// grace of 2 m, loops every minute) or shorter. A short window makes most writes late; a
// short grace lets the sweeper's phases come due while a stalled release still waits.
type timing struct {
	window                    store.Window
	orphanGrace, recycleGrace time.Duration
	gcMinAge, interval        time.Duration
}

func (t timing) String() string {
	return fmt.Sprintf("window %v, orphan grace %v, recycle grace %v, GC min age %v, loops every %v",
		time.Duration(t.window), t.orphanGrace, t.recycleGrace, t.gcMinAge, t.interval)
}

// newTiming draws a seed's timing.
func newTiming(rng *rand.Rand) timing {
	w := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 40 * time.Second}[rng.IntN(4)]
	return timing{
		window:       store.Window(w),
		orphanGrace:  []time.Duration{w / 2, w, 3 * w}[rng.IntN(3)],
		recycleGrace: []time.Duration{w, 3 * w}[rng.IntN(2)],
		gcMinAge:     []time.Duration{w, 3 * w / 2}[rng.IntN(2)],
		// sweeps closer together than a window: only the phases keep a late write safe
		interval: []time.Duration{w / 4, w / 2, 3 * w / 2}[rng.IntN(3)],
	}
}

var debugQuiescence = os.Getenv("SIM_DEBUG_Q") != ""

// epoch is where the fake clock starts: far in the future, so that no context deadline
// computed from the fake clock ever expires on the wall clock.
var epoch = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

// Config says what one run does.
type Config struct {
	Seed  uint64
	Steps int // scheduler steps with faults, before the run settles
	// Quiet keeps the trace short (the soak keeps only the tail of a failing run).
	TraceTail int
}

// Result is what one run did: its trace, and the violation it found (nil: none).
type Result struct {
	Seed  uint64
	Steps int // steps taken, the settling ones included
	Trace []string
	Err   error
	// At is the step at which Err was found.
	At int
}

// op is one request or loop round an actor serves, on its own goroutine.
type op struct {
	id      int
	name    string
	actor   *actor
	started time.Time
	cancel  context.CancelFunc
	onDone  func(*op)

	done   bool
	result any
	err    error
}

type sim struct {
	cfg    Config
	rng    *rand.Rand
	scheme *runtime.Scheme
	api    client.WithWatch // the API itself: the scheduler's and the checker's view
	clock  *testingclock.FakeClock
	timing
	gates  *gates
	states goroutineStates
	logs   logSink
	self   int64

	actors       []*actor
	ipamds       map[string]*actor
	controller   *actor
	incarnations map[string]int
	world        *world

	mu     sync.Mutex // guards op completion fields
	ops    []*op
	opSeq  int
	faults bool

	step  int
	quiet bool  // the last step woke no goroutine
	err   error // a harness failure found inside a step
	trace []string
	// writes counts what changed the API; current is its contents at currentAt writes
	writes    int
	current   *contents
	currentAt int
	// freeable is when each address may last be freed by a record-remover (window.go)
	freeable freeable
	// poolGoneAt is when the checker first saw each pool UID's state without its pool
	poolGoneAt map[string]time.Time
	// sweep is the controller's sweep in flight, and how to cancel it (a lost lease)
	sweepCancel context.CancelFunc
}

// Run runs one seed: Steps steps of faults, then the settling phase, checking the
// invariants after every step.
func Run(cfg Config) (res Result) {
	service.RemarkRetryInterval = 1000 * time.Hour // its ticker is on the wall clock: never fires here
	s := &sim{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), scheme: newScheme(),
		clock: testingclock.NewFakeClock(epoch), ipamds: map[string]*actor{},
		incarnations: map[string]int{}, world: &world{replicas: 2}, faults: true, self: currentID()}
	s.timing = newTiming(s.rng)
	s.gates = newGates(s)
	s.api = s.counted(newAPI(s.scheme, initialObjects()...))
	for _, name := range poolNames {
		s.incarnations["pool-"+name] = 1
	}
	defer s.cleanup()
	res.Seed = cfg.Seed
	fail := func(err error) Result {
		res.Err, res.At, res.Steps, res.Trace = err, s.step, s.step, s.trace
		return res
	}
	s.logf("seed %d: nodes %v, pools %v; %v", cfg.Seed, nodeNames, poolNames, s.timing)
	for _, n := range nodeNames {
		s.restart(n)
	}
	s.newController()
	for s.step = 1; s.step <= cfg.Steps; s.step++ {
		if err := s.settle(); err != nil {
			return fail(err)
		}
		if err := s.check(); err != nil {
			return fail(err)
		}
		s.act()
		if s.err != nil {
			return fail(s.err)
		}
	}
	if err := s.converge(); err != nil {
		return fail(err)
	}
	if err := s.checkConverged(); err != nil {
		return fail(err)
	}
	res.Steps, res.Trace = s.step, s.trace
	return res
}

func (s *sim) logf(format string, args ...any) {
	at := s.clock.Now().Sub(epoch)
	s.trace = append(s.trace, fmt.Sprintf("%5d %7s %s", s.step, at, fmt.Sprintf(format, args...)))
}

// settle waits until every goroutine is parked or blocked, then takes in the operations
// that finished, in their order of starting.
func (s *sim) settle() error {
	if s.quiet {
		s.quiet = false
		return nil
	}
	if err := s.states.waitQuiescent(s.self, s.gates.wake, time.Minute); err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	if debugQuiescence {
		n := len(s.gates.sorted())
		dump := string(s.states.buf[:s.states.n])
		time.Sleep(3 * time.Millisecond)
		if m := len(s.gates.sorted()); m != n {
			os.WriteFile("/tmp/dump.txt", []byte(dump), 0o644)
			panic(fmt.Sprintf("quiescence false positive: %d parked, then %d", n, m))
		}
	}
	if err := s.gates.checkSpawns(); err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	s.mu.Lock()
	var done []*op
	kept := s.ops[:0]
	for _, o := range s.ops {
		if o.done {
			done = append(done, o)
		} else {
			kept = append(kept, o)
		}
	}
	s.ops = kept
	s.mu.Unlock()
	for _, line := range s.logs.take() {
		s.logf("%s", line)
	}
	for _, o := range done {
		o.cancel()
		s.logf("done %s: %s", o.name, summary(o.result, o.err))
		if o.onDone != nil {
			o.onDone(o)
		}
	}
	if len(done) > 0 {
		return s.settle() // what onDone did may have started more
	}
	return nil
}

// startOp runs fn on a new goroutine of actor a, named for the trace and the gates;
// timeout > 0 bounds it as ipamd's socket server bounds a request.
func (s *sim) startOp(a *actor, what string, timeout time.Duration, fn func(ctx context.Context) (any, error), onDone func(*op)) *op {
	a.ops++
	s.opSeq++
	o := &op{id: s.opSeq, name: fmt.Sprintf("%s/%s%d", a.name, what, a.ops), actor: a, started: s.clock.Now(), onDone: onDone}
	ctx, cancel := context.WithCancel(context.Background())
	if timeout > 0 {
		ctx, cancel = context.WithDeadline(context.Background(), s.clock.Now().Add(timeout))
	}
	o.cancel = cancel
	s.mu.Lock()
	s.ops = append(s.ops, o)
	s.mu.Unlock()
	s.logf("start %s", o.name)
	go func() {
		s.gates.register(o.name)
		res, err := fn(ctx)
		s.mu.Lock()
		o.result, o.err, o.done = res, err, true
		s.mu.Unlock()
		s.gates.notify()
	}()
	if s.faults {
		s.follow(o.name) // its first informer reads
	}
	return o
}

func (s *sim) inFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ops)
}

// fate is what the scheduler does with a parked call.
type fate int

const (
	fateOK          fate = iota // applied and answered
	fateLost                    // applied, the answer lost (the client sees a timeout)
	fateUnavailable             // refused before applying (503: the client cannot know)
	fateTooMany                 // refused before applying (429: the client knows)
	fateLand                    // an orphaned write lands
	fateDrop                    // an orphaned write never does
	fateStall                   // held back for a while of fake time
)

func (f fate) String() string {
	return [...]string{"ok", "answer lost", "refused 503", "refused 429", "lands", "dropped", "stalled"}[f]
}

func (s *sim) chooseFate(c *call) fate {
	if c.orphan {
		if s.rng.IntN(2) == 0 {
			return fateLand
		}
		return fateDrop
	}
	if !s.faults {
		return fateOK
	}
	// a stall between a release's evidence and its free is what the commit window is
	// for: it gets a larger share than a stall anywhere else
	stall := 3
	if c.kind == local && strings.HasPrefix(c.desc, "queue free") {
		stall = 20
	}
	if s.rng.IntN(100) < stall {
		return fateStall
	}
	if c.kind == cacheRead || c.kind == local {
		return fateOK
	}
	r := s.rng.IntN(100)
	switch {
	case c.kind == apiRead && r < 5:
		return fateUnavailable
	case c.kind == apiRead:
		return fateOK
	case r < 7:
		return fateLost
	case r < 12:
		return fateUnavailable
	case r < 18:
		return fateTooMany
	}
	return fateOK
}

// release lets a parked call happen with fate f and returns what came of it.
func (s *sim) release(c *call, f fate) string {
	s.gates.remove(c)
	now := s.clock.Now()
	age := now.Sub(c.issued)
	// a write lands within half the window of being sent or never; the client stops
	// waiting after a quarter (its timeout) or at its context's deadline
	expired := c.kind == apiWrite && age > time.Duration(s.window)/2
	gaveUp := c.kind == apiWrite && (age > time.Duration(s.window)/4 || (!c.deadline.IsZero() && now.After(c.deadline)))
	switch {
	case f == fateStall:
		d := s.stall()
		c.stalled = now.Add(d)
		s.gates.park_(c)
		return "held back " + d.String()
	case f == fateDrop || (f == fateLand && expired):
		return "dropped"
	case f == fateLand:
		return "landed: " + errText(c.apply(true))
	case f == fateUnavailable:
		s.gates.answer(c, errUnavailable)
		return "refused 503"
	case f == fateTooMany:
		s.gates.answer(c, errTooMany)
		return "refused 429"
	case expired:
		s.gates.answer(c, errTimeout)
		return "expired, never applied"
	case f == fateLost || gaveUp:
		err := c.apply(true)
		s.gates.answer(c, errTimeout)
		return "applied (" + errText(err) + "), answer lost"
	}
	err := c.apply(false)
	s.gates.answer(c, err)
	return errText(err)
}

// stall is how long a stalled call is held back: into the commit window, past it, past
// the orphan sweeper's phases.
func (s *sim) stall() time.Duration {
	w := time.Duration(s.window)
	return []time.Duration{w / 2, w, 3 * w, 6 * w, 12 * w}[s.rng.IntN(5)]
}

// pause stalls every parked call of an actor: the process is descheduled for d.
func (s *sim) pause(a *actor, d time.Duration) int {
	a.pausedUntil = s.clock.Now().Add(d)
	n := 0
	for _, c := range s.gates.sorted() {
		if c.actor == a && !c.orphan {
			c.stalled = s.clock.Now().Add(d)
			n++
		}
	}
	return n
}

// kill ends an actor: its requests on the wire stay there (they may still land), the
// rest of its gates answer errKilled.
func (s *sim) kill(a *actor) {
	a.dead.Store(true)
	a.ready = false
	for _, c := range s.gates.sorted() {
		if c.actor != a {
			continue
		}
		if c.kind == apiWrite {
			s.gates.answer(c, errKilled)
			continue
		}
		s.gates.remove(c)
		s.gates.answer(c, errKilled)
	}
}

// cancelParked answers the parked calls whose context is done (a lost lease): their
// callers stop waiting, their writes stay on the wire.
func (s *sim) cancelParked() {
	for _, c := range s.gates.sorted() {
		if c.orphan || c.ctx.Err() == nil {
			continue
		}
		if c.kind != apiWrite {
			s.gates.remove(c)
		}
		s.gates.answer(c, c.ctx.Err())
	}
}

// restart starts a new ipamd on node (ending the old one) and its Reconcile.
func (s *sim) restart(node string) string {
	if old := s.ipamds[node]; old != nil && !old.isDead() {
		s.kill(old)
	}
	a := s.newIpamd(node)
	s.startOp(a, "reconcile", 0, func(ctx context.Context) (any, error) {
		return nil, a.svc.Reconcile(ctx)
	}, func(o *op) {
		if o.err == nil && !a.isDead() {
			a.ready = true
		} else if !a.isDead() {
			s.kill(a) // the daemon exits when Reconcile fails
		}
	})
	return a.name
}

// cleanup ends every goroutine of the run, so that the next run's quiescence checks see
// only its own: every actor is killed, every call answered, and the clock jumps far
// enough to end every backoff.
func (s *sim) cleanup() {
	s.faults = false
	for _, a := range s.actors {
		a.dead.Store(true)
	}
	var err error
	for range 20 {
		for _, c := range s.gates.sorted() {
			s.gates.remove(c)
			s.gates.answer(c, errKilled)
		}
		s.mu.Lock()
		for _, o := range s.ops {
			o.cancel()
		}
		s.ops = nil
		s.mu.Unlock()
		s.clock.Step(time.Hour)
		if err = s.states.waitQuiescent(s.self, s.gates.wake, 2*time.Second); err == nil && len(s.gates.sorted()) == 0 {
			return
		}
	}
	panic(fmt.Sprintf("simulation: seed %d left goroutines running: %v", s.cfg.Seed, err))
}

var (
	errUnavailable = apierrors.NewServiceUnavailable("simulation: refused before it was applied")
	errTooMany     = apierrors.NewTooManyRequests("simulation: refused before it was applied", 1)
	errTimeout     = apierrors.NewTimeoutError("simulation: the answer was lost", 0)
)

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	msg := err.Error()
	if len(msg) > 160 {
		msg = msg[:160] + "..."
	}
	return "error: " + msg
}

func summary(result any, err error) string {
	if err != nil {
		return errText(err)
	}
	switch r := result.(type) {
	case nil:
		return "ok"
	case *rpc.AllocateResponse:
		var ips []string
		for _, ip := range r.IPs {
			ips = append(ips, ip.Address)
		}
		return "ok " + strings.Join(ips, ",")
	case *rpc.GCResponse:
		var ids []string
		for _, a := range r.Released {
			ids = append(ids, a.ContainerID)
		}
		return "released [" + strings.Join(ids, ",") + "]"
	case map[string]int:
		var parts []string
		for reason, n := range r {
			parts = append(parts, fmt.Sprintf("%s=%d", reason, n))
		}
		slices.Sort(parts)
		return "recycled [" + strings.Join(parts, ",") + "]"
	case fmt.Stringer:
		return r.String()
	}
	return fmt.Sprintf("ok %v", result)
}

func itoa(n int) string { return strconv.Itoa(n) }
