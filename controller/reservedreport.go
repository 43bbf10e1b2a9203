package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// ReasonInvalidEntries is the reason of the Warning event on a ReservedIP with bad entries.
const ReasonInvalidEntries = "InvalidEntries"

// reservedReport tells operators about ReservedIPs with bad entries: objects written
// before the webhook validated ReservedIPs, or while it was not registered. The webhook
// refuses new ones; ipamd reserves what such an object clearly names either way
// (store.ReservedIPs), so this is a report, not a hazard. One event per generation, from
// the one elected controller rather than from every node's ipamd.
type reservedReport struct {
	c       client.Reader
	events  events.EventRecorder
	invalid *prometheus.GaugeVec // underpool_reservedip_invalid

	mu       sync.Mutex
	reported map[string]int64 // name -> generation reported
}

func (r *reservedReport) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res := &v1.ReservedIP{}
	if err := r.c.Get(ctx, req.NamespacedName, res); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.Name)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	_, errs := allocator.ParseReservations("spec.ips", res.Spec.IPs)
	if len(errs) == 0 {
		r.forget(res.Name)
		return reconcile.Result{}, nil
	}
	r.invalid.WithLabelValues(res.Name).Set(float64(len(errs)))
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reported == nil {
		r.reported = map[string]int64{}
	}
	if r.reported[res.Name] == res.Generation {
		return reconcile.Result{}, nil
	}
	r.reported[res.Name] = res.Generation
	r.events.Eventf(res, nil, "Warning", ReasonInvalidEntries, "ValidateReservedIP",
		"%s. The other entries are reserved; each of these reserves only what it clearly names (a reversed range the addresses between its ends, an IPv4-mapped address its IPv4 address, nothing when no address can be read): fix them",
		summarise(errs, 3))
	return reconcile.Result{}, nil
}

func (r *reservedReport) forget(name string) {
	r.invalid.DeleteLabelValues(name)
	r.mu.Lock()
	delete(r.reported, name)
	r.mu.Unlock()
}

// summarise names the first n errors and counts the rest: an event's note is limited to 1 KiB.
func summarise(errs []*allocator.EntryError, n int) string {
	var parts []string
	for i, e := range errs {
		if i == n {
			parts = append(parts, fmt.Sprintf("and %d more", len(errs)-n))
			break
		}
		parts = append(parts, e.Error())
	}
	return strings.Join(parts, "; ")
}
