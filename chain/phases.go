package chain

import (
	"time"

	"go.uber.org/zap/zapcore"
)

// phases times the steps of one ADD, logged with its outcome so an operator sees where
// an ADD spends its time (ipamd, the delegate, the pod's netns, the host link).
type phases struct {
	start, last time.Time
	names       []string
	took        []time.Duration
}

func (p *phases) mark(name string) {
	now := time.Now()
	if p.last.IsZero() {
		p.last = p.start
	}
	p.names, p.took, p.last = append(p.names, name), append(p.took, now.Sub(p.last)), now
}

func (p *phases) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	for i, n := range p.names {
		enc.AddFloat64(n, float64(p.took[i].Microseconds())/1000)
	}
	enc.AddFloat64("total", float64(time.Since(p.start).Microseconds())/1000)
	return nil
}
