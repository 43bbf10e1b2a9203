package service_test

import (
	"context"
	"strings"
	"testing"

	"k8s.io/client-go/tools/record"

	"github.com/underpool/underpool/rpc"
)

// A pod that gets no address is told why, as a Warning event naming each pool tried and
// why it was passed over; a successful ADD and a lookup records nothing.
func TestFailedAllocationRecordsAnEventOnThePod(t *testing.T) {
	one := newPoolObj("one", "10.250.1.0/24")
	one.Spec.IPs = []string{"10.250.1.10"}
	w := newWorld(t, nil, nsObj("ns"), one)
	svc := w.ipamd("node-a", nil)
	events := record.NewFakeRecorder(10)
	svc.Events = events
	first, second := podObj("ns", "first", "node-a", nil), podObj("ns", "second", "node-a", nil)
	w.create(first)
	w.create(second)
	add(t, svc, first, "ctr-1", "one")
	lookup := addReq(second, "ctr-2", []string{"one"}, nil)
	lookup.LookupOnly = true
	if _, err := svc.Allocate(context.Background(), lookup); err == nil {
		t.Fatal("a lookup of nothing held succeeded")
	}
	if len(events.Events) != 0 {
		t.Fatalf("events before any failed allocation: %v", <-events.Events)
	}
	_, err := svc.Allocate(context.Background(), addReq(second, "ctr-2", []string{"one", "missing"}, nil))
	requireCode(t, err, rpc.CodeNoAddress, "ipv4Pools")
	if len(events.Events) != 1 {
		t.Fatalf("got %d events, want 1", len(events.Events))
	}
	e := <-events.Events
	for _, want := range []string{"Warning AllocationFailed", "interface net1", "one: exhausted", "missing: no such IPPool"} {
		if !strings.Contains(e, want) {
			t.Errorf("event %q does not say %q", e, want)
		}
	}
}
