package harness

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

var interrupt struct {
	sync.Mutex
	cleanups []func()
	armed    bool
}

// StopOnInterrupt registers cleanup to run when SIGINT or SIGTERM arrives,
// after which the program exits with status 130. Cleanups run newest first,
// like defers, so namespaces go before the control plane they depend on.
// A second signal during cleanup exits at once.
//
// Cleanups registered here usually also run on the normal path (defer), so
// they must be idempotent; ControlPlane.Stop, NetNS.Close, Veth.Close and
// Process.Stop are.
func StopOnInterrupt(cleanup func()) {
	interrupt.Lock()
	defer interrupt.Unlock()
	interrupt.cleanups = append(interrupt.cleanups, cleanup)
	if interrupt.armed {
		return
	}
	interrupt.armed = true
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "\n%v: cleaning up (signal again to exit immediately)\n", sig)
		done := make(chan struct{})
		go func() {
			defer close(done)
			interrupt.Lock()
			cleanups := interrupt.cleanups
			interrupt.Unlock()
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
		}()
		select {
		case <-done:
		case <-sigs:
			fmt.Fprintln(os.Stderr, "cleanup abandoned")
		}
		os.Exit(130)
	}()
}
