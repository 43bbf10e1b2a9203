package kubelet

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// leaseDuration is what the kubelet writes into its Lease (40 s); the
// node-lifecycle controller uses its own grace period, not this value.
const leaseDuration = 40

// renewLease keeps the node's Lease in kube-node-lease fresh until ctx ends,
// the heartbeat the node-lifecycle controller watches first.
func (k *Kubelet) renewLease(ctx context.Context) {
	tick := time.NewTicker(k.cfg.LeaseInterval)
	defer tick.Stop()
	for {
		if err := k.renewLeaseOnce(ctx); err != nil && ctx.Err() == nil {
			k.logf("lease: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (k *Kubelet) renewLeaseOnce(ctx context.Context) error {
	leases := k.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Namespace: corev1.NamespaceNodeLease}}
		// owned by the Node, as the kubelet does: deleting the Node deletes its Lease
		if node, err := k.cs.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{}); err == nil {
			lease.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
		}
		lease.Spec = k.leaseSpec(now)
		_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	lease.Spec = k.leaseSpec(now)
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

func (k *Kubelet) leaseSpec(now metav1.MicroTime) coordinationv1.LeaseSpec {
	return coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(k.cfg.NodeName),
		LeaseDurationSeconds: ptr.To[int32](leaseDuration),
		RenewTime:            &now,
	}
}
