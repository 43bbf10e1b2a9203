package controller

import (
	"context"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
)

func reservation(name string, ips ...string) *v1.ReservedIP {
	return &v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.ReservedIPSpec{IPs: ips}}
}

func holding(name string, addrs ...string) *v1.Endpoint {
	ep := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
	itf := v1.EndpointInterface{ContainerID: "c-" + name, Interface: "net1"}
	for _, a := range addrs {
		itf.IPs = append(itf.IPs, v1.EndpointIP{Address: a, Pool: "p"})
	}
	ep.Status.Interfaces = []v1.EndpointInterface{itf}
	return ep
}

// enqueued runs one Endpoint event through the reserved-in-use handler.
func enqueued(t *testing.T, c client.Reader, old, new *v1.Endpoint) []string {
	t.Helper()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	h := reservationsHolding(c)
	if old == nil {
		h.Create(context.Background(), event.CreateEvent{Object: new}, q)
	} else {
		h.Update(context.Background(), event.UpdateEvent{ObjectOld: old, ObjectNew: new}, q)
	}
	var names []string
	for q.Len() > 0 {
		req, _ := q.Get()
		names = append(names, req.Name)
		q.Done(req)
	}
	slices.Sort(names)
	return names
}

// An Endpoint event reconciles only the ReservedIPs covering an address the Endpoint holds
// or, for an update, held: not every ReservedIP, whatever the event.
func TestAnEndpointEventReconcilesOnlyTheReservationsItsAddressesFallIn(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(
		reservation("single", "10.0.0.5"), reservation("range", "10.0.1.10-10.0.1.20", "fd00::1"),
		reservation("elsewhere", "10.9.9.9")).Build()
	for _, tc := range []struct {
		name     string
		old, new *v1.Endpoint
		want     []string
	}{
		{"holding nothing reserved", nil, holding("a", "10.0.0.6/24"), nil},
		{"holding a reserved address", nil, holding("a", "10.0.0.5/24"), []string{"single"}},
		{"holding addresses of two reservations", nil, holding("a", "10.0.1.15/24", "fd00::1/64", "10.0.0.5/24"), []string{"range", "single"}},
		{"releasing a reserved address", holding("a", "10.0.1.10/24"), holding("a"), []string{"range"}},
		{"an update away from reservations", holding("a", "10.0.2.1/24"), holding("a", "10.0.2.2/24"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := enqueued(t, c, tc.old, tc.new); !slices.Equal(got, tc.want) {
				t.Fatalf("enqueued %v, want %v", got, tc.want)
			}
		})
	}
}

// A reconcile finds the holders of a reservation's addresses through the address index,
// never by listing every Endpoint; a reservation too wide to look up address by address
// is checked against the whole list, with the same answer.
func TestReservedInUseLooksUpItsAddressesInsteadOfListingEveryEndpoint(t *testing.T) {
	unindexed := 0
	funcs := interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		if _, ok := list.(*v1.EndpointList); ok {
			var o client.ListOptions
			o.ApplyOptions(opts)
			if o.FieldSelector == nil {
				unindexed++
			}
		}
		return c.List(ctx, list, opts...)
	}}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithStatusSubresource(&v1.ReservedIP{}).
		WithIndex(&v1.Endpoint{}, indexEndpointAddress, endpointAddressIndex).WithInterceptorFuncs(funcs).
		WithObjects(reservation("small", "10.0.0.5", "10.0.1.10-10.0.1.20"), reservation("wide", "10.0.0.0-10.0.255.255"),
			holding("a", "10.0.0.5/16"), holding("b", "10.0.1.12/16", "10.0.1.13/16"), holding("c", "10.0.3.1/16")).Build()
	r := &reservedInUse{c: c}
	for name, want := range map[string][]string{
		"small": {"10.0.0.5 ns/a", "10.0.1.12 ns/b", "10.0.1.13 ns/b"},
		"wide":  {"10.0.0.5 ns/a", "10.0.1.12 ns/b", "10.0.1.13 ns/b", "10.0.3.1 ns/c"},
	} {
		before := unindexed
		if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKey{Name: name}}); err != nil {
			t.Fatal(err)
		}
		res := &v1.ReservedIP{}
		if err := c.Get(context.Background(), client.ObjectKey{Name: name}, res); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Status.InUse, want) {
			t.Errorf("%s: status.inUse %v, want %v", name, res.Status.InUse, want)
		}
		if name == "small" && unindexed != before {
			t.Errorf("the reconcile of a reservation of %d addresses listed every Endpoint", 12)
		}
	}
}
