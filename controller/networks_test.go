package controller

import (
	"context"
	"strings"
	"testing"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/nadgen"
)

// networkFixture is the NAD job over the fake client: api is the API; the reconciler's
// cached client sees only labelled NADs, as the manager's cache does (run.go).
type networkFixture struct {
	t      *testing.T
	api    client.WithWatch
	events *events.FakeRecorder
	r      *networkNADs
}

func newNetworkFixture(t *testing.T, funcs interceptor.Funcs, objs ...client.Object) *networkFixture {
	t.Helper()
	scheme, err := newScheme()
	if err != nil {
		t.Fatal(err)
	}
	api := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(&v1.UnderlayNetwork{}).Build()
	cached := interceptor.NewClient(api, labelledNADsOnly(funcs))
	rec := events.NewFakeRecorder(100)
	return &networkFixture{t: t, api: api, events: rec, r: &networkNADs{c: cached, api: api, events: rec, log: zap.NewNop()}}
}

// labelledNADsOnly hides the NADs without the network label from Get, as the manager's
// label-selected cache does, on top of funcs.
func labelledNADsOnly(funcs interceptor.Funcs) interceptor.Funcs {
	inner := funcs.Get
	funcs.Get = func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		var err error
		if inner != nil {
			err = inner(ctx, c, key, obj, opts...)
		} else {
			err = c.Get(ctx, key, obj, opts...)
		}
		if _, isNAD := obj.(*nadv1.NetworkAttachmentDefinition); isNAD && err == nil && obj.GetLabels()[v1.NetworkLabel] == "" {
			return apierrors.NewNotFound(schema.GroupResource{Group: "k8s.cni.cncf.io", Resource: "network-attachment-definitions"}, key.Name)
		}
		return err
	}
	return funcs
}

func network(name string, namespaces ...string) *v1.UnderlayNetwork {
	return &v1.UnderlayNetwork{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Generation: 1},
		Spec: v1.UnderlayNetworkSpec{Namespaces: namespaces, Macvlan: &v1.MacvlanNetwork{Master: "eth1"},
			IPAM: v1.NetworkIPAM{IPv4Pools: []string{"storage-v4"}}}}
}

func (f *networkFixture) reconcile(name string) reconcile.Result {
	f.t.Helper()
	res, err := f.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Name: name}})
	if err != nil {
		f.t.Fatalf("reconcile %s: %v", name, err)
	}
	return res
}

func (f *networkFixture) nad(ns, name string) *nadv1.NetworkAttachmentDefinition {
	f.t.Helper()
	nad := &nadv1.NetworkAttachmentDefinition{}
	if err := f.api.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, nad); err != nil {
		f.t.Fatalf("NAD %s/%s: %v", ns, name, err)
	}
	return nad
}

func (f *networkFixture) network(name string) *v1.UnderlayNetwork {
	f.t.Helper()
	net := &v1.UnderlayNetwork{}
	if err := f.api.Get(context.Background(), client.ObjectKey{Name: name}, net); err != nil {
		f.t.Fatal(err)
	}
	return net
}

// update writes a change of the network's spec, a generation later, as the apiserver would.
func (f *networkFixture) update(name string, change func(*v1.UnderlayNetworkSpec)) {
	f.t.Helper()
	net := f.network(name)
	change(&net.Spec)
	net.Generation++
	if err := f.api.Update(context.Background(), net); err != nil {
		f.t.Fatal(err)
	}
}

// drainEvents returns the events recorded since the last call.
func (f *networkFixture) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-f.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func (f *networkFixture) requireReady(name string, status metav1.ConditionStatus, reason string, says ...string) {
	f.t.Helper()
	net := f.network(name)
	c := meta.FindStatusCondition(net.Status.Conditions, v1.NetworkReady)
	if c == nil || c.Status != status || c.Reason != reason || c.ObservedGeneration != net.Generation {
		f.t.Fatalf("Ready condition %+v, want %s %s at generation %d", c, status, reason, net.Generation)
	}
	for _, s := range says {
		if !strings.Contains(c.Message, s) {
			f.t.Errorf("Ready message %q does not say %q", c.Message, s)
		}
	}
}

func requireEvent(t *testing.T, events []string, parts ...string) {
	t.Helper()
	for _, e := range events {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(e, p)
		}
		if all {
			return
		}
	}
	t.Fatalf("no event saying %q among %q", parts, events)
}

// rendered is what the network renders, as the test expects to find it.
func rendered(t *testing.T, net *v1.UnderlayNetwork) nadgen.Rendered {
	t.Helper()
	r, err := nadgen.Render(net)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A network gets its NAD in every namespace it names: the rendered config, the label, the
// network as controller, the device plugin's resource; status lists them, Ready is True.
func TestANetworkGetsItsNADInEveryNamespaceItNames(t *testing.T) {
	net := network("rdma", "team-a", "team-b")
	net.Spec.Macvlan = nil
	net.Spec.SRIOV = &v1.SRIOVNetwork{ResourceName: "mellanox.com/sriov_rdma", Vlan: 7}
	net.Spec.NADName = "rdma-net"
	f := newNetworkFixture(t, interceptor.Funcs{}, net)
	if res := f.reconcile("rdma"); res.RequeueAfter != 0 {
		t.Fatalf("requeued after %s with everything written", res.RequeueAfter)
	}
	want := rendered(t, net)
	for _, ns := range []string{"team-a", "team-b"} {
		nad := f.nad(ns, "rdma-net")
		if nad.Spec.Config != want.Config {
			t.Errorf("%s: config %s, want %s", ns, nad.Spec.Config, want.Config)
		}
		if nad.Labels[v1.NetworkLabel] != "rdma" || nad.Annotations[nadgen.ResourceNameAnnotation] != "mellanox.com/sriov_rdma" ||
			nad.Annotations[v1.NetworkGenerationAnnotation] != "1" {
			t.Errorf("%s: labels %v, annotations %v", ns, nad.Labels, nad.Annotations)
		}
		if ref := metav1.GetControllerOf(nad); ref == nil || ref.UID != net.UID || ref.Kind != "UnderlayNetwork" {
			t.Errorf("%s: controller %+v, want the network", ns, ref)
		}
	}
	if got := f.network("rdma").Status.NetworkAttachmentDefinitions; strings.Join(got, ",") != "team-a/rdma-net,team-b/rdma-net" {
		t.Errorf("status lists %v", got)
	}
	f.requireReady("rdma", metav1.ConditionTrue, v1.NetworkSynced, "2 NetworkAttachmentDefinitions written")
	ev := f.drainEvents()
	requireEvent(t, ev, "NADCreated", "team-a/rdma-net")
	requireEvent(t, ev, "NADCreated", "team-b/rdma-net")
	f.reconcile("rdma")
	if ev := f.drainEvents(); len(ev) != 0 {
		t.Errorf("a reconcile with nothing to do recorded %q", ev)
	}
}

// A spec change is written to every NAD, as an update of the generation, not a restore.
func TestASpecChangeReachesEveryNAD(t *testing.T) {
	f := newNetworkFixture(t, interceptor.Funcs{}, network("storage", "a", "b"))
	f.reconcile("storage")
	f.update("storage", func(s *v1.UnderlayNetworkSpec) { s.Macvlan.Master, s.Macvlan.Vlan = "eth2", 100 })
	f.drainEvents()
	f.reconcile("storage")
	want := rendered(t, f.network("storage"))
	for _, ns := range []string{"a", "b"} {
		if nad := f.nad(ns, "storage"); nad.Spec.Config != want.Config || nad.Annotations[v1.NetworkGenerationAnnotation] != "2" {
			t.Errorf("%s: config %s generation %s, want %s at 2", ns, nad.Spec.Config, nad.Annotations[v1.NetworkGenerationAnnotation], want.Config)
		}
	}
	ev := f.drainEvents()
	requireEvent(t, ev, "NADUpdated", "a/storage", "generation 2")
	for _, e := range ev {
		if strings.Contains(e, "NADRestored") {
			t.Errorf("a spec change reported as a hand edit: %s", e)
		}
	}
	f.requireReady("storage", metav1.ConditionTrue, v1.NetworkSynced)
}

// A NAD edited by hand is put back as the network renders it, and a Warning event says
// so, naming the NAD and where to make the change instead; so is one whose label was
// removed (the cache no longer holds it: the create meets it).
func TestAHandEditedNADIsPutBackAndReported(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*nadv1.NetworkAttachmentDefinition)
	}{
		{"config edited", func(n *nadv1.NetworkAttachmentDefinition) {
			n.Spec.Config = strings.Replace(n.Spec.Config, "eth1", "eth9", 1)
		}},
		{"label removed", func(n *nadv1.NetworkAttachmentDefinition) { delete(n.Labels, v1.NetworkLabel) }},
		{"resource annotation added", func(n *nadv1.NetworkAttachmentDefinition) {
			n.Annotations[nadgen.ResourceNameAnnotation] = "intel.com/other"
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newNetworkFixture(t, interceptor.Funcs{}, network("storage", "a"))
			f.reconcile("storage")
			nad := f.nad("a", "storage")
			nad.Labels["team"] = "mine" // a user's own label stays
			c.edit(nad)
			if err := f.api.Update(context.Background(), nad); err != nil {
				t.Fatal(err)
			}
			f.drainEvents()
			f.reconcile("storage")
			got := f.nad("a", "storage")
			if !inSync(got, desiredNAD(f.network("storage"), "a", rendered(t, f.network("storage")))) {
				t.Fatalf("not put back: labels %v annotations %v config %s", got.Labels, got.Annotations, got.Spec.Config)
			}
			if got.Labels["team"] != "mine" {
				t.Errorf("the user's own label went: %v", got.Labels)
			}
			requireEvent(t, f.drainEvents(), "Warning", "NADRestored", "a/storage was edited by hand", "change UnderlayNetwork storage instead")
		})
	}
}

// A NAD of the same name that is not the network's is never overwritten: the NAD stays
// as it is, the other namespaces still get theirs, Ready is False naming it and the fix,
// one Warning event says the same, and the network is looked at again later.
func TestANADItDoesNotOwnIsNeverOverwritten(t *testing.T) {
	theirs := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "storage"},
		Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: `{"cniVersion":"1.0.0","name":"storage","type":"bridge"}`}}
	other := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: "c", Name: "storage",
		Labels:          map[string]string{v1.NetworkLabel: "storage"}, // labelled, but controlled by another network
		OwnerReferences: []metav1.OwnerReference{ownerReference(network("backup"))}},
		Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: `{"other":true}`}}
	f := newNetworkFixture(t, interceptor.Funcs{}, network("storage", "a", "b", "c"), theirs, other)
	if res := f.reconcile("storage"); res.RequeueAfter != networkRecheck {
		t.Fatalf("requeue after %s, want %s: the NAD in the way may be removed", res.RequeueAfter, networkRecheck)
	}
	if got := f.nad("a", "storage"); got.Spec.Config != theirs.Spec.Config || len(got.OwnerReferences) != 0 || got.Labels[v1.NetworkLabel] != "" {
		t.Fatalf("the NAD it does not own was changed: %+v", got)
	}
	if got := f.nad("c", "storage"); got.Spec.Config != other.Spec.Config {
		t.Fatalf("another network's NAD was changed: %s", got.Spec.Config)
	}
	if f.nad("b", "storage").Spec.Config != rendered(t, network("storage", "b")).Config {
		t.Fatal("namespace b did not get its NAD")
	}
	if got := f.network("storage").Status.NetworkAttachmentDefinitions; strings.Join(got, ",") != "b/storage" {
		t.Errorf("status lists %v, want only b/storage", got)
	}
	f.requireReady("storage", metav1.ConditionFalse, v1.NetworkNADNotOwned,
		"a/storage was not made by underpool (no controller ownerReference)", "c/storage is controlled by UnderlayNetwork backup", "set spec.nadName to another name")
	requireEvent(t, f.drainEvents(), "Warning", v1.NetworkNADNotOwned, "a/storage", "c/storage")
	f.reconcile("storage")
	for _, e := range f.drainEvents() {
		if strings.Contains(e, "Warning") {
			t.Errorf("the same problem reported twice: %s", e)
		}
	}
}

// A namespace dropped from the spec loses the network's NAD; a NAD there that only
// carries the label is not the network's and stays.
func TestANamespaceDroppedFromTheSpecLosesItsNAD(t *testing.T) {
	labelledOnly := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "storage",
		Labels: map[string]string{v1.NetworkLabel: "storage"}}}
	f := newNetworkFixture(t, interceptor.Funcs{}, network("storage", "a", "b"), labelledOnly)
	f.reconcile("storage")
	f.update("storage", func(s *v1.UnderlayNetworkSpec) { s.Namespaces = []string{"a"} })
	f.reconcile("storage")
	err := f.api.Get(context.Background(), client.ObjectKey{Namespace: "b", Name: "storage"}, &nadv1.NetworkAttachmentDefinition{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("b/storage still there: %v", err)
	}
	f.nad("a", "storage")
	f.nad("x", "storage")
	requireEvent(t, f.drainEvents(), "NADDeleted", "b/storage")
	f.update("storage", func(s *v1.UnderlayNetworkSpec) { s.NADName = "storage-net" })
	f.reconcile("storage")
	if err := f.api.Get(context.Background(), client.ObjectKey{Namespace: "a", Name: "storage"}, &nadv1.NetworkAttachmentDefinition{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a/storage kept after spec.nadName changed: %v", err)
	}
	f.nad("a", "storage-net")
}

// A namespace that does not exist yet is named in the condition and looked at again
// later; the others get their NAD meanwhile.
func TestAMissingNamespaceIsReportedAndRetried(t *testing.T) {
	noNamespace := interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if obj.GetNamespace() == "later" {
			return apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "later")
		}
		return c.Create(ctx, obj, opts...)
	}}
	f := newNetworkFixture(t, noNamespace, network("storage", "now", "later"))
	if res := f.reconcile("storage"); res.RequeueAfter != networkRecheck {
		t.Fatalf("requeue after %s, want %s", res.RequeueAfter, networkRecheck)
	}
	f.nad("now", "storage")
	f.requireReady("storage", metav1.ConditionFalse, v1.NetworkNamespaceNotFound, "namespaces not found: later")
}

// A NAD left by a deleted network of the same name (the garbage collector has not got to
// it yet) is taken over, not reported as someone else's.
func TestANADLeftByADeletedNetworkOfTheSameNameIsAdopted(t *testing.T) {
	old := network("storage", "a")
	old.UID = "uid-before"
	left := desiredNAD(old, "a", rendered(t, old))
	f := newNetworkFixture(t, interceptor.Funcs{}, network("storage", "a"), left)
	f.reconcile("storage")
	if ref := metav1.GetControllerOf(f.nad("a", "storage")); ref == nil || ref.UID != "uid-storage" {
		t.Fatalf("controller %+v, want the live network", ref)
	}
	f.requireReady("storage", metav1.ConditionTrue, v1.NetworkSynced)
	requireEvent(t, f.drainEvents(), "NADAdopted", "a/storage")
}

// A spec that does not render (written while the webhook was away) writes nothing and
// says why, naming the field.
func TestASpecThatDoesNotRenderWritesNothing(t *testing.T) {
	net := network("storage", "a")
	net.Spec.Ipvlan = &v1.IpvlanNetwork{Master: "eth1"}
	f := newNetworkFixture(t, interceptor.Funcs{}, net)
	f.reconcile("storage")
	if err := f.api.Get(context.Background(), client.ObjectKey{Namespace: "a", Name: "storage"}, &nadv1.NetworkAttachmentDefinition{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a NAD was written: %v", err)
	}
	f.requireReady("storage", metav1.ConditionFalse, v1.NetworkInvalidSpec, "spec.macvlan and spec.ipvlan are all set")
	requireEvent(t, f.drainEvents(), "Warning", v1.NetworkInvalidSpec)
}

// Without multus' CRD the networks say what to install, and nothing fails.
func TestWithoutTheNADKindNetworksSayToInstallMultus(t *testing.T) {
	f := newNetworkFixture(t, interceptor.Funcs{}, network("storage", "a"))
	f.r.kindMissing = true
	f.reconcile("storage")
	f.requireReady("storage", metav1.ConditionFalse, v1.NetworkNADKindMissing, "install multus")
}

// A failed write is retried with backoff (an error), and the condition names it.
func TestAFailedWriteIsRetriedAndNamed(t *testing.T) {
	refuse := interceptor.Funcs{Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
		return apierrors.NewServiceUnavailable("etcd is away")
	}}
	f := newNetworkFixture(t, refuse, network("storage", "a"))
	_, err := f.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Name: "storage"}})
	if err == nil || !strings.Contains(err.Error(), "a/storage") {
		t.Fatalf("reconcile: %v, want an error naming the NAD", err)
	}
	f.requireReady("storage", metav1.ConditionFalse, v1.NetworkWriteFailed, "etcd is away")
}

// An event on a NAD reaches the network its label names and the one that controls it.
func TestNADEventsReachTheirNetworks(t *testing.T) {
	nad := desiredNAD(network("a", "ns"), "ns", nadgen.Rendered{Name: "n"})
	nad.Labels[v1.NetworkLabel] = "b" // edited by hand
	got := networksOfNAD(context.Background(), nad)
	if len(got) != 2 || got[0].Name != "b" || got[1].Name != "a" {
		t.Fatalf("requests %v, want b (the label) and a (the controller)", got)
	}
	plain := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "n"}}
	if got := networksOfNAD(context.Background(), plain); len(got) != 0 {
		t.Fatalf("a NAD of nobody's maps to %v", got)
	}
}
