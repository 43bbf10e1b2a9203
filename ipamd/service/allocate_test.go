package service_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
)

// addReq is an ADD of pod's net1 from the given pools per family.
func addReq(pod *corev1.Pod, containerID string, v4, v6 []string) *rpc.AllocateRequest {
	return &rpc.AllocateRequest{ContainerID: containerID, IfName: "net1", Network: "under",
		Pod: rpc.Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}, IPv4Pools: v4, IPv6Pools: v6}
}

// requireCode asserts err is an rpc.Error with that code (and field, when given).
func requireCode(t *testing.T, err error, code uint, field string) {
	t.Helper()
	var e *rpc.Error
	if !errors.As(err, &e) || e.Code != code || (field != "" && e.Field != field) {
		t.Fatalf("got %v, want code %d field %q", err, code, field)
	}
}

// ADD is idempotent by container and interface: a runtime retrying an ADD gets the same
// addresses, and the pool holds them once.
func TestAddIsIdempotent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		v4, v6 []string
		held   map[string]int64
	}{
		{"IPv4", []string{"p4"}, nil, map[string]int64{"p4": 1, "p6": 0}},
		{"dual stack", []string{"p4"}, []string{"p6"}, map[string]int64{"p4": 1, "p6": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil, nsObj("ns"), newPoolObj("p4", "10.250.1.0/24"), newPoolObj("p6", "fd00:250::/64"))
			pod := podObj("ns", "a", "node-a", nil)
			w.create(pod)
			svc := w.ipamd("node-a", nil)
			first, err := svc.Allocate(context.Background(), addReq(pod, "ctr", tc.v4, tc.v6))
			if err != nil {
				t.Fatal(err)
			}
			again, err := svc.Allocate(context.Background(), addReq(pod, "ctr", tc.v4, tc.v6))
			if err != nil {
				t.Fatal(err)
			}
			if len(first.IPs) != len(tc.v4)+len(tc.v6) || len(again.IPs) != len(first.IPs) {
				t.Fatalf("first %+v, again %+v", first.IPs, again.IPs)
			}
			for i := range first.IPs {
				if first.IPs[i] != again.IPs[i] {
					t.Fatalf("the repeated ADD got %+v, the first %+v", again.IPs[i], first.IPs[i])
				}
			}
			for pool, n := range tc.held {
				w.requireAllocated(pool, n)
			}
			if ep := w.endpoint("ns", "a"); len(ep.Status.Interfaces) != 1 {
				t.Fatalf("Endpoint holds %d attachments, want 1", len(ep.Status.Interfaces))
			}
			w.requireOneOwner()
		})
	}
}

// An ADD that fails half-way leaves nothing held: what the first family took goes back,
// and a pool commit whose Endpoint write the API refused is undone.
func TestAddRollsBackWhatItTook(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: v1.GroupVersion.Group, Resource: "endpoints"}, "a", errors.New("quota"))
	invalid := apierrors.NewInvalid(schema.GroupKind{Group: v1.GroupVersion.Group, Kind: "Endpoint"}, "a", nil)
	refuse := func(err error) *interceptor.Funcs {
		return &interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if _, ok := obj.(*v1.Endpoint); ok {
				return err
			}
			return c.Create(ctx, obj, opts...)
		}}
	}
	for _, tc := range []struct {
		name  string
		funcs *interceptor.Funcs
		v6    []string
		code  uint
		field string
	}{
		{"second family exhausted", nil, []string{"full6"}, rpc.CodeNoAddress, "ipv6Pools"},
		{"second family's pool missing", nil, []string{"nope"}, rpc.CodeNoAddress, "ipv6Pools"},
		{"Endpoint write forbidden", refuse(forbidden), []string{"p6"}, rpc.CodeBadRequest, "pod"},
		{"Endpoint write invalid", refuse(invalid), []string{"p6"}, rpc.CodeInternal, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full6 := newPoolObj("full6", "fd00:251::/64")
			full6.Spec.IPs = []string{"fd00:251::5"}
			w := newWorld(t, tc.funcs, nsObj("ns"), newPoolObj("p4", "10.250.1.0/24"), newPoolObj("p6", "fd00:250::/64"), full6)
			w.mark("full6", netip.MustParseAddr("fd00:251::5"))
			pod := podObj("ns", "a", "node-a", nil)
			w.create(pod)
			_, err := w.ipamd("node-a", nil).Allocate(context.Background(), addReq(pod, "ctr", []string{"p4"}, tc.v6))
			requireCode(t, err, tc.code, tc.field)
			w.requireAllocated("p4", 0)
			w.requireAllocated("p6", 0)
			if ep := w.endpoint("ns", "a"); ep != nil {
				t.Fatalf("a failed ADD left an Endpoint: %+v", ep)
			}
		})
	}
}

// A malformed annotation fails the ADD before anything is allocated, naming the key.
func TestBadAnnotationFailsBeforeAllocating(t *testing.T) {
	for key, value := range map[string]string{
		v1.AnnotationRoutes:  `[{"dst":"10.0.0.0"}]`,
		v1.AnnotationIPPool:  `{"ipv4":["p4"],"ipv5":["x"]}`,
		v1.AnnotationSubnets: `[{"interface":"net1"}]`,
		// the pod has eth0 and net1 only (no networks annotation: eth0)
		v1.AnnotationDefaultRouteNIC: "net3",
	} {
		t.Run(key, func(t *testing.T) {
			w := newWorld(t, nil, nsObj("ns"), newPoolObj("p4", "10.250.1.0/24"))
			pod := podObj("ns", "a", "node-a", nil)
			pod.Annotations = map[string]string{key: value}
			w.create(pod)
			_, err := w.ipamd("node-a", nil).Allocate(context.Background(), addReq(pod, "ctr", []string{"p4"}, nil))
			requireCode(t, err, rpc.CodeBadRequest, "annotations")
			if !strings.Contains(err.Error(), key) {
				t.Fatalf("error %v does not name %s", err, key)
			}
			w.requireAllocated("p4", 0)
		})
	}
}

// The routes annotation reaches the response for the interfaces it names.
func TestPodRoutesReachTheResponse(t *testing.T) {
	w := newWorld(t, nil, nsObj("ns"), newPoolObj("p4", "10.250.1.0/24"))
	pod := podObj("ns", "a", "node-a", nil)
	pod.Annotations = map[string]string{v1.AnnotationRoutes: `[{"dst":"10.9.0.0/16","gw":"10.250.1.1","interface":"net1"},{"dst":"10.8.0.0/16","interface":"net2"}]`}
	w.create(pod)
	resp, err := w.ipamd("node-a", nil).Allocate(context.Background(), addReq(pod, "ctr", []string{"p4"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Routes) != 1 || resp.Routes[0] != (rpc.Route{Dst: "10.9.0.0/16", Gw: "10.250.1.1"}) {
		t.Fatalf("routes %+v, want only net1's", resp.Routes)
	}
}

// The default-route-nic annotation reaches the response, for every interface: each
// decides in the pod whether it is the one named.
func TestDefaultRouteNICReachesTheResponse(t *testing.T) {
	w := newWorld(t, nil, nsObj("ns"), newPoolObj("p4", "10.250.1.0/24"))
	pod := podObj("ns", "a", "node-a", nil)
	pod.Annotations = map[string]string{v1.AnnotationNetworks: "ns/a,ns/b", v1.AnnotationDefaultRouteNIC: "net2"}
	w.create(pod)
	resp, err := w.ipamd("node-a", nil).Allocate(context.Background(), addReq(pod, "ctr", []string{"p4"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.DefaultRouteInterface != "net2" {
		t.Fatalf("defaultRouteInterface %q, want net2", resp.DefaultRouteInterface)
	}
}

// A StatefulSet pod's successor that lands where its predecessor's pool does not reach
// (node affinity) gets a fresh address from a pool that does, and the old one goes back.
func TestStatefulSetSuccessorOutsideThePoolsReach(t *testing.T) {
	sts := statefulSet("ns", "db", 1, 0)
	onlyA := newPoolObj("only-a", "10.250.1.0/24")
	onlyA.Spec.NodeAffinity = &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}
	nodeA, nodeB := nodeObj("node-a"), nodeObj("node-b")
	nodeA.Labels, nodeB.Labels = map[string]string{"zone": "a"}, map[string]string{"zone": "b"}
	w := newWorld(t, nil, nsObj("ns"), sts, onlyA, newPoolObj("any", "10.250.2.0/24"), nodeA, nodeB)
	db0 := podObj("ns", "db-0", "node-a", sts)
	w.create(db0)
	a, b := w.ipamd("node-a", nil), w.ipamd("node-b", nil)
	first := add(t, a, db0, "ctr-1", "only-a")
	del(t, a, db0, "ctr-1")
	w.requireAllocated("only-a", 1) // kept, detached, for the successor
	w.deletePod(db0)

	succ := podObj("ns", "db-0", "node-b", sts)
	succ.UID = types.UID("uid-db-0-2")
	w.create(succ)
	resp, err := b.Allocate(context.Background(), addReq(succ, "ctr-2", []string{"only-a", "any"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.IPs) != 1 || resp.IPs[0].Pool != "any" || resp.IPs[0].Address == first {
		t.Fatalf("successor on node-b got %+v, want a fresh address from pool any", resp.IPs)
	}
	w.requireAllocated("only-a", 0)
	w.requireAllocated("any", 1)
	ep := w.endpoint("ns", "db-0")
	if len(ep.Status.Interfaces) != 1 || ep.Status.Interfaces[0].ContainerID != "ctr-2" || ep.Status.Node != "node-b" {
		t.Fatalf("Endpoint = %+v", ep)
	}
	w.requireOneOwner()
}
