package service_test

import (
	"context"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/apppool"
)

// A CronJob's pod names only its Job; ipamd reads the Job (once, by name, from the API)
// to learn the CronJob, and allocates from the CronJob's application pool, which all of
// its Jobs' pods share. A bare Job's pod uses the Job's own pool; a pod that names its
// pools, or a Deployment's pod, costs no read.
func TestACronJobsPodAllocatesFromTheCronJobsPool(t *testing.T) {
	reads := 0
	counting := &interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok && m.Kind == "Job" {
			reads++
		}
		return c.Get(ctx, key, obj, opts...)
	}}
	cron := apppool.Workload{Kind: apppool.KindCronJob, Namespace: "ns", Name: "nightly"}
	once := apppool.Workload{Kind: apppool.KindJob, Namespace: "ns", Name: "once"}
	cronJob := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "nightly-29000000", UID: "job-1",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: "nightly", UID: "cj", Controller: ptr.To(true)}}}}
	bareJob := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "once", UID: "job-2"}}
	w := newWorld(t, counting, nsObj("ns"), cronJob, bareJob, newPoolObj(cron.PoolName(v1.IPv4), "10.250.1.0/24"),
		newPoolObj(once.PoolName(v1.IPv4), "10.250.2.0/24"), newPoolObj("nad", "10.250.3.0/24"))
	svc := w.ipamd("node-a", nil)
	onSubnet := map[string]string{v1.AnnotationSubnet: `{"ipv4":["s"]}`}
	jobPod := func(name string, job *batchv1.Job, annotations map[string]string) string {
		pod := podObj("ns", name, "node-a", nil)
		pod.Annotations = annotations
		pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: ptr.To(true)}}
		w.create(pod)
		resp, err := svc.Allocate(context.Background(), addReq(pod, "ctr-"+name, []string{"nad"}, nil))
		if err != nil {
			t.Fatalf("ADD of %s: %v", name, err)
		}
		return resp.IPs[0].Pool
	}
	if got := jobPod("a", cronJob, onSubnet); got != cron.PoolName(v1.IPv4) {
		t.Fatalf("the CronJob's pod got an address of %s, want the CronJob's pool %s", got, cron.PoolName(v1.IPv4))
	}
	if got := jobPod("b", bareJob, onSubnet); got != once.PoolName(v1.IPv4) {
		t.Fatalf("the bare Job's pod got an address of %s, want the Job's pool", got)
	}
	if reads != 2 {
		t.Fatalf("%d reads of a Job for two pods on application pools, want 2", reads)
	}
	if got := jobPod("c", cronJob, nil); got != "nad" || reads != 2 {
		t.Fatalf("a Job's pod without a subnet annotation: pool %s after %d reads, want the network's pool and no read", got, reads)
	}
	w.requireOneOwner()
}
