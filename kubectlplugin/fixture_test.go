package kubectlplugin

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/underpool/underpool/api/v1"
)

// now is when every test looks at its cluster.
var now = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// fakeAPI is controller-runtime's fake client holding objs, with the plugin's scheme.
func fakeAPI(t *testing.T, objs ...client.Object) client.Client {
	t.Helper()
	s, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
}

// runPlugin runs a subcommand (built by newCmd) on c with -o output, and returns what it
// printed.
func runPlugin(t *testing.T, c client.Client, output string, newCmd func(*Options) *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	o := &Options{Streams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, Output: output, client: c}
	cmd := newCmd(o)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.Execute()
	return out.String(), err
}

// pool is an IPPool whose UID is "uid-pool-" and its name.
func pool(name, subnet string, ips []string) *v1.IPPool {
	return &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-pool-" + name)},
		Spec: v1.IPPoolSpec{Subnet: subnet, IPs: ips}}
}

// allocation is p's PoolAllocation marking allocated (offset runs) as ipamd writes it.
func allocation(p *v1.IPPool, allocated string) *v1.PoolAllocation {
	a := v1.AllocationOf(p)
	a.State.Allocated = allocated
	return a
}

func runningPod(ns, name, uid string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)},
		Spec: corev1.PodSpec{NodeName: "node-1"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
}

func statefulSet(ns, name string, replicas int32) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: appsv1.StatefulSetSpec{Replicas: &replicas}}
}

// endpoint is a pod's Endpoint made at created, holding one attachment per address.
func endpoint(ns, name, podUID string, created time.Time, ips ...v1.EndpointIP) *v1.Endpoint {
	ep := &v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(created)},
		Status: v1.EndpointStatus{PodUID: podUID, Node: "node-1"}}
	for i, ip := range ips {
		ep.Status.Interfaces = append(ep.Status.Interfaces, v1.EndpointInterface{ContainerID: name + "-cid", Interface: "eth" + string(rune('0'+i)),
			PodUID: podUID, Created: metav1.NewTime(created), IPs: []v1.EndpointIP{ip}})
	}
	return ep
}

func ip(address, pool string) v1.EndpointIP { return v1.EndpointIP{Address: address, Pool: pool} }

// hasRow reports whether a line of out holds every cell, in order.
func hasRow(out string, cells ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := line, true
		for _, c := range cells {
			i := strings.Index(rest, c)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(c):]
		}
		if ok {
			return true
		}
	}
	return false
}
