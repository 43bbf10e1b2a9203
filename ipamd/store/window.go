package store

import (
	"errors"
	"time"

	"k8s.io/client-go/rest"
)

// Window is the release protocol's one time bound (docs/design.md, "The release
// protocol"). Every write that depends on evidence gathered a moment earlier (the
// Endpoint write after the pool commit that made the address taken; the pool release
// after the Endpoint write that proved its record gone) is sent only within the first
// half of the window after the evidence, and each write request carries a quarter of
// the window as the apiserver's own timeout, leaving the last quarter for etcd to settle
// a write whose answer was lost. So a dependent write has taken effect by the end of the
// window after its evidence, or never does. The orphan sweeper spaces its phases a whole
// window apart (package orphans), and that is what makes a late write harmless.
//
// Every ipamd and the controller must run with the same window (the --commit-window
// flag; the Helm chart sets both from one value).
type Window time.Duration

// DefaultWindow leaves 20 s to send a dependent write, 10 s for the apiserver to answer
// it and 10 s for etcd to settle: far beyond a healthy cluster's write latency, and short
// enough that the orphan sweeper frees a crashed allocation within minutes.
const DefaultWindow = Window(40 * time.Second)

// ErrWindowClosed means a dependent write was not sent because its evidence is older
// than the first half of the commit window: sending it now could let it land after the
// orphan sweeper freed the address and handed it out again. What it would have freed is
// left as an orphan for the sweeper; what it would have recorded was never recorded.
var ErrWindowClosed = errors.New("commit window closed: the evidence for this write is too old to act on")

// SendBy is the last moment a write depending on evidence gathered at from may be sent.
func (w Window) SendBy(from time.Time) time.Time { return from.Add(w.orDefault() / 2) }

// WriteTimeout is the apiserver-side timeout every write request carries.
func (w Window) WriteTimeout() time.Duration { return w.orDefault() / 4 }

// Spacing is how far apart the orphan sweeper's mark, confirmation and free must be.
func (w Window) Spacing() time.Duration { return w.orDefault() }

func (w Window) orDefault() time.Duration {
	if w <= 0 {
		return time.Duration(DefaultWindow)
	}
	return time.Duration(w)
}

// WriterConfig is cfg for a client whose every request carries the window's write
// timeout to the apiserver. Only for writes and direct reads: a watch through it would
// be cut after the timeout.
func (w Window) WriterConfig(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Timeout = w.WriteTimeout()
	return out
}
