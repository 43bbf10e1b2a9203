package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/e2e"
)

func macvlanNetwork(namespaces ...string) v1.UnderlayNetworkSpec {
	return v1.UnderlayNetworkSpec{Namespaces: namespaces, Macvlan: &v1.MacvlanNetwork{Master: "eth1"}}
}

// A generated NAD edited by hand is put back, with a Warning event on the network naming
// it; a NAD of the same name that someone else made is left exactly as it is, the
// network's Ready condition and a Warning event naming it and the fix; once the network
// no longer names that namespace it is Ready, and deleting the network deletes its own
// NAD only.
func TestAHandEditIsPutBackAndAForeignNADIsLeftAlone(t *testing.T) {
	mine, theirs := e2e.NewNamespace(t), e2e.NewNamespace(t)
	name := "shared-" + rand.String(5)
	foreign := `{"cniVersion":"1.0.0","name":"` + name + `","plugins":[{"type":"bridge"}]}`
	e2e.NewNAD(t, theirs, name, []byte(foreign))
	spec := macvlanNetwork(mine, theirs)
	spec.NADName = name
	net := e2e.NewUnderlayNetwork(t, spec)

	e2e.WaitNetworkReady(t, net.Name, metav1.ConditionFalse, v1.NetworkNADNotOwned)
	cond := conditionOf(t, net.Name)
	for _, want := range []string{theirs + "/" + name + " was not made by underpool", "set spec.nadName to another name"} {
		if !strings.Contains(cond, want) {
			t.Errorf("Ready message %q does not say %q", cond, want)
		}
	}
	if got, err := e2e.GetNAD(t, theirs, name); err != nil || e2e.NADConfigOf(got) != foreign || len(got.GetOwnerReferences()) != 0 {
		t.Fatalf("the foreign NAD was touched (%v): %+v", err, got)
	}
	requireNetworkEvent(t, net.Name, "NADNotOwned", theirs+"/"+name)
	generated, err := e2e.GetNAD(t, mine, name)
	if err != nil {
		t.Fatalf("%s did not get its NAD: %v", mine, err)
	}
	rendered := e2e.NADConfigOf(generated)

	e2e.SetNADConfig(t, mine, name, strings.Replace(rendered, `"master":"eth1"`, `"master":"eth9"`, 1))
	e2e.Eventually(t, "the hand edit put back", time.Minute, func() (bool, string) {
		nad, err := e2e.GetNAD(t, mine, name)
		if err != nil {
			return false, err.Error()
		}
		return e2e.NADConfigOf(nad) == rendered, e2e.NADConfigOf(nad)
	})
	requireNetworkEvent(t, net.Name, "NADRestored", mine+"/"+name+" was edited by hand")

	updated := &v1.UnderlayNetwork{}
	e2e.Eventually(t, "dropping "+theirs+" from the network", 30*time.Second, func() (bool, string) {
		if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Name: net.Name}, updated); err != nil {
			return false, err.Error()
		}
		updated.Spec.Namespaces = []string{mine}
		err := e2e.Suite.Client.Update(e2e.Ctx(t), updated)
		return err == nil, fmt.Sprintf("update: %v", err)
	})
	ready := e2e.WaitNetworkReady(t, net.Name, metav1.ConditionTrue, v1.NetworkSynced)
	if got := ready.Status.NetworkAttachmentDefinitions; len(got) != 1 || got[0] != mine+"/"+name {
		t.Fatalf("status lists %v", got)
	}

	if err := e2e.Suite.Client.Delete(e2e.Ctx(t), net); err != nil {
		t.Fatal(err)
	}
	e2e.Eventually(t, "the network's NAD to go with it", 2*time.Minute, func() (bool, string) {
		_, err := e2e.GetNAD(t, mine, name)
		return e2e.IsNotFound(err), fmt.Sprintf("get: %v", err)
	})
	if got, err := e2e.GetNAD(t, theirs, name); err != nil || e2e.NADConfigOf(got) != foreign {
		t.Fatalf("the foreign NAD after the network went: %v %+v", err, got)
	}
}

// On a real apiserver a bad UnderlayNetwork is refused naming the field and the fix:
// by the CRD's rules where CEL can say it, by the webhook (nadgen.Validate, the other
// networks, the pools) where it cannot.
func TestABadUnderlayNetworkIsRefusedNamingTheFieldAndTheFix(t *testing.T) {
	ns := e2e.NewNamespace(t)
	_, v6, _ := e2e.NextSubnet()
	poolV6 := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v6}).Name
	taken := e2e.NewUnderlayNetwork(t, macvlanNetwork(ns))
	for _, c := range []struct {
		name   string
		mutate func(*v1.UnderlayNetworkSpec)
		want   []string
	}{
		{"two delegates (CEL)", func(s *v1.UnderlayNetworkSpec) { s.SRIOV = &v1.SRIOVNetwork{ResourceName: "intel.com/vf"} },
			[]string{"set exactly one of spec.macvlan, spec.ipvlan, spec.sriov, spec.hostDevice"}},
		{"an ipvlan mode on macvlan (CEL)", func(s *v1.UnderlayNetworkSpec) { s.Macvlan.Mode = "l2" },
			[]string{"spec.macvlan.mode", `Unsupported value: "l2"`, `"bridge"`}},
		{"no namespace (CEL)", func(s *v1.UnderlayNetworkSpec) { s.Namespaces = nil }, []string{"spec.namespaces"}},
		{"host-device by name and by resource (CEL)", func(s *v1.UnderlayNetworkSpec) {
			s.Macvlan, s.HostDevice = nil, &v1.HostDeviceNetwork{Device: "eth2", ResourceName: "intel.com/pf"}
		}, []string{"set exactly one of spec.hostDevice.device, pciBusID, resourceName"}},
		{"a check window past 10s (the webhook)", func(s *v1.UnderlayNetworkSpec) { s.Checks = &v1.NetworkChecks{Timeout: "11s"} },
			[]string{`admission webhook "underlaynetworks.underpool.io" denied the request`, `spec.checks.timeout: "11s" must be a duration between 1ms and 10s`}},
		{"a multicast MAC prefix (the webhook)", func(s *v1.UnderlayNetworkSpec) { s.MACPrefix = "01:00" },
			[]string{`spec.macPrefix: "01:00" is a multicast prefix`}},
		{"a NAD another network renders (the webhook)", func(s *v1.UnderlayNetworkSpec) { s.NADName = taken.Name },
			[]string{fmt.Sprintf("spec.namespaces: UnderlayNetwork %s already renders NetworkAttachmentDefinition %s/%s", taken.Name, ns, taken.Name)}},
		{"an IPv6 pool as IPv4 (the webhook)", func(s *v1.UnderlayNetworkSpec) { s.IPAM.IPv4Pools = []string{poolV6} },
			[]string{fmt.Sprintf("spec.ipam.ipv4Pools[0]: IPPool %s is IPv6", poolV6), "move it to spec.ipam.ipv6Pools"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := macvlanNetwork(ns)
			c.mutate(&spec)
			bad := &v1.UnderlayNetwork{ObjectMeta: metav1.ObjectMeta{Name: "bad-" + rand.String(5)}, Spec: spec}
			err := e2e.Suite.Client.Create(e2e.Ctx(t), bad, client.DryRunAll)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
			}
		})
	}
	good := macvlanNetwork(ns)
	good.NADName, good.HostConnectivity = "other", &v1.NetworkHostConnectivity{Enabled: ptr.To(false)}
	e2e.NewUnderlayNetwork(t, good)
}

func conditionOf(t *testing.T, name string) string {
	t.Helper()
	net := &v1.UnderlayNetwork{}
	if err := e2e.Suite.Client.Get(context.Background(), client.ObjectKey{Name: name}, net); err != nil {
		t.Fatal(err)
	}
	for _, c := range net.Status.Conditions {
		if c.Type == v1.NetworkReady {
			return c.Message
		}
	}
	return ""
}

// requireNetworkEvent waits for an event about the network with reason whose message
// says says.
func requireNetworkEvent(t *testing.T, network, reason, says string) {
	t.Helper()
	e2e.Eventually(t, reason+" event on UnderlayNetwork "+network, 30*time.Second, func() (bool, string) {
		var seen []string
		for _, e := range e2e.EventsAbout(t, "UnderlayNetwork", network, reason) {
			if strings.Contains(e.Message, says) {
				return true, ""
			}
			seen = append(seen, e.Message)
		}
		return false, strings.Join(seen, " | ")
	})
}
