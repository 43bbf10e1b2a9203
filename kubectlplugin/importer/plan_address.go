package importer

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// addresses keeps the peer addresses of live pods, one Endpoint per pod, in address
// order, and reports every other one as skipped with why.
func (pl *planner) addresses() error {
	pl.pods, pl.gone = map[podKey]*corev1.Pod{}, map[podKey]string{}
	pl.eps, pl.epFrom = map[podKey]*v1.Endpoint{}, map[podKey]string{}
	pl.allocated, pl.seen = map[string]*allocator.RunSet{}, map[netip.Addr]string{}
	sort.SliceStable(pl.st.allocs, func(i, j int) bool { return pl.st.allocs[i].ip.Less(pl.st.allocs[j].ip) })
	for _, a := range pl.st.allocs {
		why, err := pl.address(a)
		if err != nil {
			return err
		}
		if why != "" {
			pl.p.report.Skipped = append(pl.p.report.Skipped, Skip{Address: a.ip.String(), From: a.from, Pod: a.namespace + "/" + a.pod, Reason: why})
		}
	}
	if n := pl.unknownSandboxes(); n > 0 {
		pl.p.report.Notes = append(pl.p.report.Notes, fmt.Sprintf("%d attachment(s) of live pods have no sandbox ID in the peer's records: each is recorded as %s<pod UID>; ipamd ends it on that pod's DEL once the pod is ending, and its next ADD takes it over", n, v1.UnknownSandboxPrefix))
	}
	return nil
}

// unknownSandboxes counts the planned attachments whose sandbox the peer did not record.
func (pl *planner) unknownSandboxes() int {
	n := 0
	for _, ep := range pl.eps {
		for _, itf := range ep.Status.Interfaces {
			if v1.IsUnknownSandbox(itf.ContainerID) {
				n++
			}
		}
	}
	return n
}

// address keeps one peer address, or says why it is skipped.
func (pl *planner) address(a peerAlloc) (skipped string, err error) {
	view := pl.views[a.pool]
	if view == nil {
		return "its pool is not imported", nil
	}
	off, ok := view.Offset(a.ip)
	if !ok {
		return fmt.Sprintf("outside the pool's subnet %s", view.Prefix), nil
	}
	if a.namespace == "" || a.pod == "" {
		return "the peer records no pod for it", nil
	}
	k := podKey{a.namespace, a.pod}
	pod, why, err := pl.livePod(k)
	if err != nil || why != "" {
		return why, err
	}
	if a.podUID != "" && a.podUID != string(pod.UID) {
		return fmt.Sprintf("the address was given to pod UID %s; pod %s/%s is now UID %s, another incarnation", a.podUID, a.namespace, a.pod, pod.UID), nil
	}
	if holder, dup := pl.seen[a.ip]; dup {
		return "the address is recorded twice; kept for " + holder, nil
	}
	pl.seen[a.ip] = a.namespace + "/" + a.pod
	if pl.allocated[a.pool] == nil {
		pl.allocated[a.pool] = &allocator.RunSet{}
	}
	pl.allocated[a.pool].Add(off)
	pl.record(a, pod, view, off)
	return "", nil
}

// livePod reads a pod once: it, or why its addresses are not imported.
func (pl *planner) livePod(k podKey) (*corev1.Pod, string, error) {
	if pod, known := pl.pods[k]; known {
		return pod, "", nil
	}
	if why := pl.gone[k]; why != "" {
		return nil, why, nil
	}
	pod := &corev1.Pod{}
	switch err := pl.c.Get(pl.ctx, client.ObjectKey{Namespace: k.ns, Name: k.name}, pod); {
	case apierrors.IsNotFound(err):
		pl.gone[k] = "the pod no longer exists"
	case err != nil:
		return nil, "", fmt.Errorf("reading pod %s/%s: %w", k.ns, k.name, err)
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		pl.gone[k] = fmt.Sprintf("the pod has finished (phase %s): its sandbox is gone", pod.Status.Phase)
	default:
		pl.pods[k] = pod
		return pod, "", nil
	}
	return nil, pl.gone[k], nil
}

// record adds the address to the pod's Endpoint, on the attachment of its container and
// interface. Where the peer kept no sandbox ID, the attachment names an unknown sandbox of
// the pod (v1.UnknownSandboxID): ipamd then matches the pod's own DEL and next ADD by pod
// UID and interface, since no runtime sends that ID.
func (pl *planner) record(a peerAlloc, pod *corev1.Pod, view *allocator.PoolView, off uint64) {
	ep := pl.endpointOf(a, pod)
	ip := v1.EndpointIP{Address: view.Prefixed(off).String(), Pool: a.pool, Vlan: view.Vlan}
	if view.Gateway.IsValid() {
		ip.Gateway = view.Gateway.String()
	}
	containerID := a.containerID
	if containerID == "" {
		containerID = v1.UnknownSandboxID(string(pod.UID))
	}
	var itf *v1.EndpointInterface
	for i := range ep.Status.Interfaces {
		if x := &ep.Status.Interfaces[i]; x.ContainerID == containerID && x.Interface == a.ifName {
			itf = x
		}
	}
	if itf == nil {
		ep.Status.Interfaces = append(ep.Status.Interfaces, v1.EndpointInterface{
			ContainerID: containerID, Interface: a.ifName, PodUID: string(pod.UID), Created: metav1.NewTime(pl.now.UTC().Truncate(time.Second)),
		})
		itf = &ep.Status.Interfaces[len(ep.Status.Interfaces)-1]
	}
	itf.IPs = append(itf.IPs, ip)
}

// endpointOf returns the pod's planned Endpoint, made on its first address.
func (pl *planner) endpointOf(a peerAlloc, pod *corev1.Pod) *v1.Endpoint {
	k := podKey{a.namespace, a.pod}
	if ep := pl.eps[k]; ep != nil {
		return ep
	}
	ep := &v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: a.namespace, Name: a.pod, Labels: importedLabel(), Finalizers: []string{v1.EndpointProtection}},
		Status:     v1.EndpointStatus{PodUID: string(pod.UID), Node: pod.Spec.NodeName},
	}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		ep.Status.OwnerKind, ep.Status.OwnerName = ref.Kind, ref.Name
	}
	if ep.Status.Node == "" {
		ep.Status.Node = a.node
	}
	pl.eps[k] = ep
	pl.epOrder = append(pl.epOrder, k)
	pl.epFrom[k] = a.from
	return ep
}
