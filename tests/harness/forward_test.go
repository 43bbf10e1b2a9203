package harness

import (
	"bufio"
	"net"
	"testing"
)

// A program in a netns standing for a node dials 127.0.0.1:port there and talks to
// whatever listens on that address in ours (the apiserver, for multus): both ways, and
// the listener goes with Close.
func TestForwarderReachesOurLoopbackFromTheNodeNetns(t *testing.T) {
	RequireRoot(t)
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				_, _ = c.Write([]byte("echo " + line))
			}()
		}
	}()
	node := newNetNS(t, "hfw")
	f, err := ForwardInto(node, echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	dial := func() (string, error) {
		var reply string
		err := node.Do(func() error {
			c, err := net.Dial("tcp", echo.Addr().String())
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.Write([]byte("hello\n")); err != nil {
				return err
			}
			reply, err = bufio.NewReader(c).ReadString('\n')
			return err
		})
		return reply, err
	}
	if got, err := dial(); err != nil || got != "echo hello\n" {
		t.Fatalf("through the forwarder: %q, %v; want \"echo hello\\n\"", got, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(); err == nil {
		t.Fatal("the node netns still reaches our loopback after Close")
	}
}
