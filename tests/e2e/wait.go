package e2e

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Eventually polls cond every 250ms until it holds or timeout passes; the failure names
// what was awaited and the last reason cond gave. It bounds waits generously and never
// asserts on timing.
func Eventually(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		ok, why := cond()
		last = why
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting %s for %s: %s", timeout, what, last)
	}
}

// WaitFor is eventually for a condition with nothing to say, within a minute.
func WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	Eventually(t, what, time.Minute, func() (bool, string) { return cond(), "" })
}

// HoldFor runs check every 250ms for d: for "stays so" conditions, where polling until
// true would prove nothing. check fails the test itself.
func HoldFor(d time.Duration, check func()) {
	for end := time.Now().Add(d); ; {
		check()
		if time.Now().After(end) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}
