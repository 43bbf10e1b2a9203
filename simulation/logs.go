package simulation

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logSink gathers what the code under test logs, so that the trace says what it did
// (an address freed, a free left to the sweeper, an orphan reclaimed). Goroutines log
// concurrently only between two steps; the lines of one step are sorted, so the trace
// does not depend on which logged first.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logger(actor string) *zap.Logger {
	return zap.New(&sinkCore{sink: l, actor: actor, level: zapcore.InfoLevel})
}

// take returns the lines logged since the last call, sorted.
func (l *logSink) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	sort.Strings(out)
	return out
}

type sinkCore struct {
	sink   *logSink
	actor  string
	level  zapcore.Level
	fields []zapcore.Field
}

func (c *sinkCore) Enabled(l zapcore.Level) bool { return l >= c.level }

func (c *sinkCore) With(fields []zapcore.Field) zapcore.Core {
	return &sinkCore{sink: c.sink, actor: c.actor, level: c.level, fields: append(append([]zapcore.Field(nil), c.fields...), fields...)}
}

func (c *sinkCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

// loggedKeys are the fields worth a place in the trace.
var loggedKeys = map[string]bool{"pool": true, "ip": true, "pod": true, "containerID": true, "reason": true, "ips": true, "error": true}

func (c *sinkCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range append(append([]zapcore.Field(nil), c.fields...), fields...) {
		if loggedKeys[f.Key] {
			f.AddTo(enc)
		}
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "log %s %s: %s", c.actor, e.Level.CapitalString(), e.Message)
	for _, k := range keys {
		v := fmt.Sprint(enc.Fields[k])
		if len(v) > 120 {
			v = v[:120] + "..."
		}
		fmt.Fprintf(&b, " %s=%s", k, v)
	}
	c.sink.mu.Lock()
	c.sink.lines = append(c.sink.lines, b.String())
	c.sink.mu.Unlock()
	return nil
}

func (c *sinkCore) Sync() error { return nil }
