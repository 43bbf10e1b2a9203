package simulation

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The scheduler decides only when the system is quiescent: every goroutine of every actor
// is parked in a gate, blocked on a channel, a lock or the fake clock, or gone. A
// real-time settle window would be flaky on a loaded machine (a goroutine starved of CPU
// for a millisecond looks idle); the goroutines' own states, as the runtime reports them,
// are not. A goroutine the runtime shows runnable or running is not quiescent, whatever
// it is about to do.

// stableStates are the wait reasons of a goroutine that only another goroutine, a gate
// release or the fake clock can wake. (No actor sleeps or waits on a real timer: those
// would be woken by the wall clock and make the schedule depend on the machine's speed.)
// Not "semacquire": a goroutine reading its own stack while the scheduler dumps every
// stack waits on the runtime's semaphore in that state, and is about to run on.
var stableStates = []string{
	"chan receive", "chan send", "select", "sync.Mutex.Lock", "sync.RWMutex.Lock", "sync.RWMutex.RLock",
	"sync.Cond.Wait", "sync.WaitGroup.Wait",
}

// goroutineStates reads every goroutine's id and state from one stop-the-world dump.
type goroutineStates struct {
	mu  sync.Mutex
	buf []byte
	n   int
}

// quiescent reports whether every goroutine but self waits in a stable state; when not,
// it names the first that does not (for the stuck report).
func (g *goroutineStates) quiescent(self int64) (bool, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.buf == nil {
		g.buf = make([]byte, 1<<20)
	}
	var n int
	for {
		n = runtime.Stack(g.buf, true)
		if n < len(g.buf) {
			break
		}
		g.buf = make([]byte, 2*len(g.buf))
	}
	// one block per goroutine, blank-line separated; only the simulation's goroutines
	// count (a profiler's or the test framework's may well be running)
	g.n = n
	for _, block := range bytes.Split(g.buf[:n], []byte("\n\n")) {
		line := block
		if i := bytes.IndexByte(block, '\n'); i >= 0 {
			line = block[:i]
		}
		id, state, ok := header(line)
		if !ok || id == self || stable(state) || !bytes.Contains(block, ours) {
			continue
		}
		return false, fmt.Sprintf("goroutine %d [%s]", id, state)
	}
	return true, ""
}

// ours is in the stack of every goroutine of the simulation: its frames, or the line
// naming the goroutine that created it.
var ours = []byte("github.com/underpool/underpool/")

// header parses "goroutine 12 [chan receive, 2 minutes]:".
func header(line []byte) (int64, string, bool) {
	rest, ok := bytes.CutPrefix(line, []byte("goroutine "))
	if !ok {
		return 0, "", false
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return 0, "", false
	}
	id, err := strconv.ParseInt(string(rest[:sp]), 10, 64)
	if err != nil {
		return 0, "", false
	}
	open, end := bytes.IndexByte(rest, '['), bytes.LastIndexByte(rest, ']')
	if open < 0 || end < open {
		return 0, "", false
	}
	state := string(rest[open+1 : end])
	if i := strings.IndexByte(state, ','); i >= 0 {
		state = state[:i]
	}
	return id, state, true
}

func stable(state string) bool {
	for _, s := range stableStates {
		if state == s || strings.HasPrefix(state, s+" (") {
			return true
		}
	}
	return false
}

// selfAndParent returns the calling goroutine's id and the id of the goroutine that
// created it (0 when the dump names none).
func selfAndParent() (int64, int64) {
	var arr [8192]byte
	buf := arr[:runtime.Stack(arr[:], false)]
	id, _, _ := header(buf[:bytes.IndexByte(buf, '\n')+1])
	var parent int64
	if i := bytes.LastIndex(buf, []byte(" in goroutine ")); i >= 0 {
		rest := buf[i+len(" in goroutine "):]
		if j := bytes.IndexByte(rest, '\n'); j >= 0 {
			rest = rest[:j]
		}
		parent, _ = strconv.ParseInt(string(bytes.TrimSpace(rest)), 10, 64)
	}
	return id, parent
}

func currentID() int64 {
	var arr [64]byte
	buf := arr[:runtime.Stack(arr[:], false)]
	rest, _ := bytes.CutPrefix(buf, []byte("goroutine "))
	if sp := bytes.IndexByte(rest, ' '); sp > 0 {
		id, _ := strconv.ParseInt(string(rest[:sp]), 10, 64)
		return id
	}
	return 0
}

// waitQuiescent polls until quiescent, yielding first and then sleeping a little longer
// each round; wake is signalled whenever a goroutine parks or finishes, so the usual
// step costs one dump. It gives up after limit of wall time, returning the culprit.
func (g *goroutineStates) waitQuiescent(self int64, wake <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	pause := 20 * time.Microsecond
	for i := 0; ; i++ {
		select {
		case <-wake:
		case <-time.After(pause):
		}
		ok, culprit := g.quiescent(self)
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not quiescent after %v: %s", limit, culprit)
		}
		if i > 3 {
			pause = min(2*pause, 5*time.Millisecond)
		}
	}
}
