package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/controller"
	"github.com/underpool/underpool/controller/webhook"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/e2e"
)

// Issue 17, finding 3, at the API: a ReservedIP with one bad entry is refused, the message
// naming the entry's index and the fix; CEL refuses what it can express (an IPv4 range's
// order, an IPv4-mapped address), the webhook the rest (an IPv6 range's order).
func TestAReservedIPWithABadEntryIsRefusedNamingTheEntryAndTheFix(t *testing.T) {
	_, v6, x := e2e.NextSubnet()
	v6base := strings.TrimSuffix(v6, "/64")
	for _, c := range []struct {
		name string
		ips  []string
		want []string
	}{
		{"a reversed IPv4 range (CEL)", []string{fmt.Sprintf("10.250.%d.10", x), fmt.Sprintf("10.250.%d.30-10.250.%d.20", x, x)},
			[]string{fmt.Sprintf("spec.ips[1]: Invalid value: \"string\": range 10.250.%d.30-10.250.%d.20 is reversed: write 10.250.%d.20-10.250.%d.30", x, x, x, x)}},
		{"a reversed IPv6 range (the webhook)", []string{fmt.Sprintf("10.250.%d.10", x), v6base + "30-" + v6base + "20"},
			[]string{`admission webhook "reservedips.underpool.io" denied the request`,
				fmt.Sprintf("spec.ips[1]: range %s30-%s20 is reversed: write %s20-%s30", v6base, v6base, v6base, v6base)}},
		{"an IPv4-mapped address (CEL)", []string{fmt.Sprintf("::ffff:10.250.%d.10", x)}, []string{"spec.ips[0]: Invalid value", "not ::ffff:"}},
		{"mixed families (CEL)", []string{fmt.Sprintf("10.250.%d.1-%s1", x, v6base)}, []string{"spec.ips[0]: Invalid value", "of one family"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := &v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: "bad-" + rand.String(5)}, Spec: v1.ReservedIPSpec{IPs: c.ips}}
			err := e2e.Suite.Client.Create(e2e.Ctx(t), bad)
			if err == nil {
				_ = e2e.Suite.Client.Delete(context.Background(), bad)
				t.Fatal("accepted")
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
			}
		})
	}
	e2e.NewReservedIP(t, fmt.Sprintf("10.250.%d.10", x), fmt.Sprintf("10.250.%d.20-10.250.%d.30", x, x), v6base+"20-"+v6base+"30") // the fixes pass
}

// Issue 17, finding 3, in ipamd: a ReservedIP that got in with a bad entry (written while
// the webhook did not see ReservedIPs) still keeps its good entries out of allocation, and
// the controller reports it (an InvalidEntries event, underpool_reservedip_invalid).
func TestAReservedIPWrittenPastTheWebhookStillBlocksItsGoodEntries(t *testing.T) {
	v4, v6, _ := e2e.NextSubnet()
	b, v6base := strings.TrimSuffix(v4, "0/24"), strings.TrimSuffix(v6, "/64")
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "10-" + b + "11"}})
	canaryPool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, IPs: []string{b + "50"}})

	bad := &v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: "past-webhook-" + rand.String(5)},
		Spec: v1.ReservedIPSpec{IPs: []string{b + "10", v6base + "30-" + v6base + "20"}}} // the router, and a reversed IPv6 range
	createPastTheReservedIPWebhook(t, bad)
	// informers deliver one kind's events in order: once ipamd keeps the canary's address
	// out, it has read the bad ReservedIP written before it
	e2e.NewReservedIP(t, b+"50")
	ns := e2e.NewNamespace(t)
	e2e.Eventually(t, "ipamd to read the ReservedIPs", 30*time.Second, func() (bool, string) {
		resp, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "canary", IfName: "net1",
			Pod: rpc.Pod{Namespace: ns, Name: "canary"}, IPv4Pools: []string{canaryPool.Name}})
		if err == nil {
			_ = e2e.Suite.Ipamd.Client.Release(e2e.Ctx(t), &rpc.ReleaseRequest{ContainerID: "canary", Pod: rpc.Pod{Namespace: ns, Name: "canary"}})
			return false, "the canary got " + resp.IPs[0].Address
		}
		return strings.Contains(err.Error(), "exhausted"), err.Error()
	})

	got, err := e2e.AllocateFor(t, e2e.NewPod(t, ns, "first", nil, nil, nil), "net1", pool.Name)
	if err != nil || got.IPs[0].Address != b+"11/24" {
		t.Fatalf("want %s11, the only address not reserved, got %+v %v", b, got, err)
	}
	if got, err := e2e.AllocateFor(t, e2e.NewPod(t, ns, "second", nil, nil, nil), "net1", pool.Name); err == nil || !strings.Contains(err.Error(), "exhausted") {
		t.Fatalf("the reserved %s10 was handed out beside a bad entry: %+v %v", b, got, err)
	}
	e2e.RequireInvariants(t, nil, pool.Name, canaryPool.Name)
	e2e.ReleaseAll(t, ns)

	e2e.WaitFor(t, "an InvalidEntries event on "+bad.Name, func() bool {
		for _, e := range e2e.EventsAbout(t, "ReservedIP", bad.Name, controller.ReasonInvalidEntries) {
			if strings.Contains(e.Message, "spec.ips[1]: range "+v6base+"30-"+v6base+"20 is reversed") {
				return true
			}
		}
		return false
	})
	e2e.Eventually(t, "underpool_reservedip_invalid{reservedip="+bad.Name+"} = 1", 30*time.Second, func() (bool, string) {
		v, ok := e2e.Scrape(t, e2e.Suite.ControllerMetrics).Get("underpool_reservedip_invalid", "reservedip", bad.Name)
		return ok && v == 1, fmt.Sprintf("%v (present %v)", v, ok)
	})
}

// uncheckedLabel marks the objects the reservedips webhook is told to skip while
// createPastTheReservedIPWebhook writes one.
const uncheckedLabel = "e2e.underpool.io/unchecked"

// createPastTheReservedIPWebhook writes a ReservedIP the webhook would refuse, as one
// written before the webhook validated ReservedIPs (or while it was not registered) was:
// the webhook is told to skip objects with uncheckedLabel until it is written, then is
// restored and proven to refuse again. The object goes when the test ends.
func createPastTheReservedIPWebhook(t *testing.T, res *v1.ReservedIP) {
	t.Helper()
	restore := setReservedIPWebhookSelector(t, &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: uncheckedLabel, Operator: metav1.LabelSelectorOpDoesNotExist}}})
	res.Labels = map[string]string{uncheckedLabel: "true"}
	// the apiserver applies a changed webhook configuration a moment later
	e2e.Eventually(t, "the apiserver to skip the webhook for "+res.Name, 30*time.Second, func() (bool, string) {
		err := e2e.Suite.Client.Create(e2e.Ctx(t), res.DeepCopy())
		return err == nil, fmt.Sprint(err)
	})
	t.Cleanup(func() { _ = e2e.Suite.Client.Delete(context.Background(), res) })
	restore()
	probe := &v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: "probe-" + rand.String(5), Labels: res.Labels}, Spec: res.Spec}
	e2e.Eventually(t, "the webhook to check ReservedIPs again", 30*time.Second, func() (bool, string) {
		err := e2e.Suite.Client.Create(e2e.Ctx(t), probe.DeepCopy(), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "denied the request"), fmt.Sprint(err)
	})
}

// setReservedIPWebhookSelector gives the reservedips webhook an object selector and
// returns what puts the old one back.
func setReservedIPWebhookSelector(t *testing.T, sel *metav1.LabelSelector) (restore func()) {
	t.Helper()
	var old *metav1.LabelSelector
	set := func(to *metav1.LabelSelector, keepOld bool) error {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := e2e.Suite.Client.Get(c, client.ObjectKey{Name: webhook.ConfigName}, cfg); err != nil {
			return err
		}
		for i := range cfg.Webhooks {
			if cfg.Webhooks[i].Name == "reservedips.underpool.io" {
				if keepOld {
					old = cfg.Webhooks[i].ObjectSelector
				}
				cfg.Webhooks[i].ObjectSelector = to
				return e2e.Suite.Client.Update(c, cfg)
			}
		}
		return errors.New("no reservedips.underpool.io webhook is registered")
	}
	if err := set(sel, true); err != nil {
		t.Fatal(err)
	}
	done := false
	restore = func() {
		if !done {
			done = true
			if err := set(old, false); err != nil {
				t.Errorf("restoring the reservedips webhook: %v", err)
			}
		}
	}
	t.Cleanup(restore)
	return restore
}
