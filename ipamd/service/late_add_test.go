package service_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
)

// lateKey marks the context of the ADD whose first read of its pod stalls.
type lateKey struct{}

// stallPodRead holds the first read of a Pod made under a lateKey context until released
// is closed, after telling arrived.
func stallPodRead(arrived chan<- struct{}, released <-chan struct{}) *interceptor.Funcs {
	stalled := false
	return &interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if _, pod := obj.(*corev1.Pod); pod && ctx.Value(lateKey{}) != nil && !stalled {
			stalled = true
			close(arrived)
			<-released
		}
		return c.Get(ctx, key, obj, opts...)
	}}
}

// Found by the simulation (ipamd/simulation): an ADD that ipamd worked on after its
// plugin had given up (ipamd's requests are detached from the connection) took over the
// record of the sandbox the runtime made next, which was running with that address; the
// runtime's CNI GC, listing only the live sandbox, then released the late ADD's record
// and freed the address under the live pod. An ADD that arrived before the pod's current
// attachment was recorded is for a sandbox that is gone: it takes nothing over.
func TestALateADDOfAnAbandonedSandboxTakesNothingFromTheLiveOne(t *testing.T) {
	arrived, released := make(chan struct{}), make(chan struct{})
	w := newWorld(t, stallPodRead(arrived, released), nsObj("ns"), nodeObj("node-a"), newPoolObj("p", "10.250.1.0/24"))
	pod := podObj("ns", "a", "node-a", nil)
	w.create(pod)
	svc := w.ipamd("node-a", nil)

	// the first sandbox's ADD reaches ipamd and stalls reading the pod
	lateDone := make(chan error, 1)
	go func() {
		ctx := context.WithValue(context.Background(), lateKey{}, true)
		_, err := svc.Allocate(ctx, &rpc.AllocateRequest{ContainerID: "ctr-1", IfName: "net1", Network: "under",
			Pod: rpc.Pod{Namespace: "ns", Name: "a", UID: string(pod.UID)}, IPv4Pools: []string{"p"}})
		lateDone <- err
	}()
	<-arrived
	// its plugin gives up; the runtime tears ctr-1 down and runs the pod in ctr-2
	del(t, svc, pod, "ctr-1")
	live := add(t, svc, pod, "ctr-2", "p")

	close(released)
	if err := <-lateDone; err == nil {
		t.Log("the late ADD of ctr-1 succeeded")
	}
	// the runtime's CNI GC lists the sandbox it runs
	svc.GCMinAge = 0
	if _, err := svc.GC(context.Background(), &rpc.GCRequest{Network: "under", Valid: []rpc.Attachment{{ContainerID: "ctr-2", IfName: "net1"}}}, false); err != nil {
		t.Fatal(err)
	}

	var holds string
	var records any = "no Endpoint"
	for ep := w.endpoint("ns", "a"); ep != nil; ep = nil {
		records = ep.Status.Interfaces
	}
	for _, itf := range endpointInterfaces(w, "ns", "a") {
		if itf.ContainerID == "ctr-2" && len(itf.IPs) == 1 {
			holds = itf.IPs[0].Address
		}
	}
	if holds != live {
		t.Fatalf("ctr-2 runs with %s, but its record holds %q (records: %+v)", live, holds, records)
	}
	w.requireAllocated("p", 1)
	w.requireOneOwner()
}

func endpointInterfaces(w *world, ns, name string) []v1.EndpointInterface {
	if ep := w.endpoint(ns, name); ep != nil {
		return ep.Status.Interfaces
	}
	return nil
}
