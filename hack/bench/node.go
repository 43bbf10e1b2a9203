package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"

	"github.com/underpool/underpool/tests/harness"
)

// nodeAddress is the node's own address, on its uplink in the node netns: host
// connectivity (on by default) routes pods to the node's global addresses, so a node
// needs one. It sits in 10.250.255.0/24, which planSubnets never hands to a pool.
const nodeAddress = "10.250.255.1/24"

// nodeNetNS is the network namespace standing for the node every plugin runs in, as
// the kubelet's runtime would run them on a real node: underpool's defaults (host
// veth, policy routing, probes) change the node's links, routes and rules, and those
// must be a throw-away namespace's, never the machine's. The macvlan parent (uplink)
// lives in it; the other end of its veth stays in the root netns, deleted at the end.
type nodeNetNS struct {
	ns     *harness.NetNS
	uplink *harness.Veth // A: root netns end; B: the parent inside ns
	proxy  *loopbackProxy
}

// newNodeNetNS makes the node netns, its uplink and, for plugins that talk to the
// apiserver themselves (whereabouts), a forwarder for apiHost inside it. Everything
// made is pushed onto cl.
func newNodeNetNS(apiHost string, cl *cleanups) (*nodeNetNS, error) {
	ns, err := harness.NewNetNS(harness.UniqueName("bnode"))
	if err != nil {
		return nil, err
	}
	cl.push(func() { _ = ns.Close() })
	if err := harness.LinkSetUp(ns, "lo"); err != nil {
		return nil, err
	}
	uplink, err := harness.NewVethPair(harness.UniqueName("bpa"), harness.UniqueName("bpb"))
	if err != nil {
		return nil, err
	}
	cl.push(func() { _ = uplink.Close() })
	if err := uplink.MoveB(ns); err != nil {
		return nil, err
	}
	if err := harness.AddAddr(ns, uplink.B, nodeAddress); err != nil {
		return nil, err
	}
	u, err := url.Parse(apiHost)
	if err != nil {
		return nil, fmt.Errorf("apiserver address %q: %w", apiHost, err)
	}
	proxy, err := newLoopbackProxy(ns, u.Host)
	if err != nil {
		return nil, err
	}
	cl.push(proxy.close)
	return &nodeNetNS{ns: ns, uplink: uplink, proxy: proxy}, nil
}

// parent is the macvlan parent's name inside the node netns.
func (n *nodeNetNS) parent() string { return n.uplink.B }

// loopbackProxy listens on addr (127.0.0.1:port) inside a netns and forwards every
// connection to the same addr in the root netns. The apiserver binds to the root
// netns' loopback, which a plugin in the node netns cannot reach; with the forwarder
// the kubeconfig (and its TLS name) work unchanged there. Only whereabouts uses it:
// ipamd stays in the root netns and the underpool plugins talk to it over a unix
// socket, which is a file and reachable from any netns.
type loopbackProxy struct {
	l    net.Listener
	addr string
	wg   sync.WaitGroup
}

func newLoopbackProxy(ns *harness.NetNS, addr string) (*loopbackProxy, error) {
	p := &loopbackProxy{addr: addr}
	// a socket belongs to the netns of the thread that made it, whichever thread
	// later accepts on it
	err := ns.Do(func() error {
		var err error
		p.l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("forwarder for %s in %s: %w", addr, ns.Name(), err)
	}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *loopbackProxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		go p.forward(in)
	}
}

func (p *loopbackProxy) forward(in net.Conn) {
	defer in.Close()
	out, err := net.Dial("tcp", p.addr)
	if err != nil {
		return
	}
	defer out.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	<-done
}

func (p *loopbackProxy) close() {
	_ = p.l.Close()
	p.wg.Wait()
}
