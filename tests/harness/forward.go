package harness

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Forwarder makes a TCP address on loopback inside a network namespace reach the same
// address in ours. A netns standing for a node has a loopback of its own, where the
// control plane (listening on our 127.0.0.1) is not: programs run there, multus reading a
// kubeconfig that names https://127.0.0.1:port among them, reach it through the
// forwarder, and the machine's root namespace gains no link, address or route for it.
type Forwarder struct {
	l     net.Listener
	addr  string
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
	wg    sync.WaitGroup
}

// ForwardInto listens on addr (host:port) inside ns, whose loopback it brings up, and
// forwards every connection to addr dialled from our own namespace. A socket keeps the
// namespace it was made in: only the listen call runs switched into ns.
func ForwardInto(ns *NetNS, addr string) (*Forwarder, error) {
	if err := LinkSetUp(ns, "lo"); err != nil {
		return nil, err
	}
	var l net.Listener
	err := ns.Do(func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("forwarding %s into %s: %w", addr, nameOf(ns), err)
	}
	f := &Forwarder{l: l, addr: addr, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

func (f *Forwarder) serve() {
	defer f.wg.Done()
	for {
		in, err := f.l.Accept()
		if err != nil {
			return // closed
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.relay(in)
		}()
	}
}

// relay copies both ways until both sides are done (or Close ends them), then closes both.
func (f *Forwarder) relay(in net.Conn) {
	out, err := net.Dial("tcp", f.addr)
	if err != nil {
		_ = in.Close()
		return
	}
	if !f.track(in, out) {
		return
	}
	defer f.untrack(in, out)
	copied := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// the other direction may still carry the answer: pass the end of this one on
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		copied <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-copied
	<-copied
}

// track registers a relayed pair so Close can end it; false (both closed) once closing.
func (f *Forwarder) track(conns ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		f.conns[c] = struct{}{}
	}
	return true
}

func (f *Forwarder) untrack(conns ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
		delete(f.conns, c)
	}
}

// Close stops listening, ends the connections being relayed and waits for them.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	f.done = true
	err := f.l.Close()
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
