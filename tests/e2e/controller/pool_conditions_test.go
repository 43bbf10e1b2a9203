package controller

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/rpc"
	"github.com/underpool/underpool/tests/e2e"
	"github.com/underpool/underpool/tests/harness"
)

// An exhausted pool says so: the pod that got nothing has a Warning event naming the pool
// and why, the pool has the Exhausted condition (kept by the elected controller) and
// `kubectl get ippools` shows FREE and USED; a release clears all of it.
func TestExhaustedPoolTellsThePodAndTheOperator(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	b := strings.TrimSuffix(v4, "0/24")
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4, Gateway: b + "1", IPs: []string{b + "10-" + b + "11"}})
	ns := e2e.NewNamespace(t)
	for _, name := range []string{"a", "b"} {
		if _, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-" + name, IfName: "net1",
			Pod: rpc.Pod{Namespace: ns, Name: name}, IPv4Pools: []string{pool.Name}}); err != nil {
			t.Fatal(err)
		}
	}
	pod := e2e.NewPod(t, ns, "starved", nil, nil, nil)
	_, err := e2e.Suite.Ipamd.Client.Allocate(e2e.Ctx(t), &rpc.AllocateRequest{ContainerID: "ctr-starved", IfName: "net1",
		Pod: rpc.Pod{Namespace: ns, Name: pod.Name, UID: string(pod.UID)}, IPv4Pools: []string{pool.Name}})
	if err == nil || !strings.Contains(err.Error(), pool.Name+": exhausted") {
		t.Fatalf("ADD from an exhausted pool: %v", err)
	}

	e2e.Eventually(t, "a Warning AllocationFailed event on the pod naming the pool", 30*time.Second, func() (bool, string) {
		var list corev1.EventList
		if err := e2e.Suite.Client.List(e2e.Ctx(t), &list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range list.Items {
			if e.InvolvedObject.Kind == "Pod" && e.InvolvedObject.Name == pod.Name && e.InvolvedObject.UID == pod.UID &&
				e.Type == corev1.EventTypeWarning && e.Reason == "AllocationFailed" && strings.Contains(e.Message, pool.Name+": exhausted") {
				return true, ""
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, strings.Join(seen, "\n")
	})
	requireCondition(t, pool.Name, v1.PoolExhausted, "True", "NoFreeAddress")
	requireCondition(t, pool.Name, v1.PoolInvalid, "False", "Valid")
	requireCondition(t, pool.Name, v1.PoolOverlapping, "False", "NoOverlap")
	requireGetIPPools(t, pool.Name, "2", "2", "0", "100%")

	if err := e2e.Suite.Ipamd.Client.Release(e2e.Ctx(t), &rpc.ReleaseRequest{ContainerID: "ctr-a", Pod: rpc.Pod{Namespace: ns, Name: "a"}}); err != nil {
		t.Fatal(err)
	}
	requireCondition(t, pool.Name, v1.PoolExhausted, "False", "AddressesFree")
	requireGetIPPools(t, pool.Name, "2", "1", "1", "50%")
	// the allocations since changed nothing of the controller's conditions
	if got := e2e.FreshPool(t, pool.Name); len(got.Status.Conditions) != 3 || e2e.FreshState(t, pool.Name).Allocated == "" {
		t.Fatalf("status after both writers: %+v", got.Status)
	}
	e2e.ReleaseAll(t, ns)
}

// A pool whose status.allocated is corrupt (written past ipamd) is marked Invalid, with
// the reason, and counted as neither exhausted nor free.
func TestCorruptPoolIsInvalid(t *testing.T) {
	v4, _, _ := e2e.NextSubnet()
	pool := e2e.NewPool(t, v1.IPPoolSpec{Subnet: v4})
	requireCondition(t, pool.Name, v1.PoolInvalid, "False", "Valid")
	writeAllocated(t, pool.Name, "7-x")
	requireCondition(t, pool.Name, v1.PoolInvalid, "True", "CorruptStatus")
	requireCondition(t, pool.Name, v1.PoolExhausted, "Unknown", "PoolInvalid")
	writeAllocated(t, pool.Name, "")
	requireCondition(t, pool.Name, v1.PoolInvalid, "False", "Valid")
}

// writeAllocated sets a pool's state.allocated as an operator would.
func writeAllocated(t *testing.T, pool, allocated string) {
	t.Helper()
	e2e.EditState(t, pool, func(st *v1.AllocationState) { st.Allocated = allocated })
}

// requireCondition waits until the pool shows the condition with that status and reason.
func requireCondition(t *testing.T, pool, typ, status, reason string) {
	t.Helper()
	e2e.Eventually(t, "IPPool "+pool+" condition "+typ+"="+status+" ("+reason+")", 30*time.Second, func() (bool, string) {
		p := &v1.IPPool{}
		if err := e2e.Suite.Client.Get(e2e.Ctx(t), client.ObjectKey{Name: pool}, p); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(p.Status.Conditions, typ)
		if c == nil {
			return false, "no such condition"
		}
		return string(c.Status) == status && c.Reason == reason, string(c.Status) + " " + c.Reason + ": " + c.Message
	})
}

// requireGetIPPools waits until `kubectl get ippools NAME` (the real kubectl, against the
// apiserver's printer columns) shows the pool's TOTAL, ALLOCATED, FREE and USED.
func requireGetIPPools(t *testing.T, pool, total, allocated, free, used string) {
	t.Helper()
	kubectl, err := harness.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	wantHeader := []string{"NAME", "SUBNET", "GATEWAY", "TOTAL", "ALLOCATED", "FREE", "USED", "DEFAULT", "AGE"}
	e2e.Eventually(t, "kubectl get ippools to show "+total+" "+allocated+" "+free+" "+used, 30*time.Second, func() (bool, string) {
		out, err := exec.Command(kubectl, "--kubeconfig", e2e.Suite.CP.KubeconfigPath, "get", "ippools", pool).CombinedOutput()
		if err != nil {
			return false, err.Error() + ": " + string(out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != strings.Join(wantHeader, " ") {
			return false, string(out)
		}
		row := columns(lines[0], lines[1])
		return row["NAME"] == pool && row["TOTAL"] == total && row["ALLOCATED"] == allocated && row["FREE"] == free &&
			row["USED"] == used && row["DEFAULT"] == "", string(out)
	})
}

// columns splits a row of kubectl's table by where the header's columns start (an empty
// cell, as of a false boolean, is blank there).
func columns(header, row string) map[string]string {
	out := map[string]string{}
	names := strings.Fields(header)
	for i, name := range names {
		start, end := strings.Index(header, name), len(row)
		if i+1 < len(names) {
			end = min(strings.Index(header, names[i+1]), len(row))
		}
		if start < len(row) {
			out[name] = strings.TrimSpace(row[start:end])
		}
	}
	return out
}
