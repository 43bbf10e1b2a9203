package importer

import (
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// endpoints creates each pod's Endpoint; one that already records these addresses is
// left alone; one that records others (ipamd already serves this pod) refuses the import.
func (pl *planner) endpoints() error {
	pl.unchangedEP = map[podKey]bool{}
	for _, k := range pl.epOrder {
		ep := pl.eps[k]
		cur := &v1.Endpoint{}
		err := pl.c.Get(pl.ctx, client.ObjectKey{Namespace: k.ns, Name: k.name}, cur)
		switch {
		case apierrors.IsNotFound(err):
			pl.p.endpoints = append(pl.p.endpoints, ep)
			pl.p.report.change(ActionCreate, "Endpoint", k.ns+"/"+k.name, pl.epFrom[k], endpointDetail(ep))
		case err != nil:
			return fmt.Errorf("reading Endpoint %s/%s: %w", k.ns, k.name, err)
		case holdsAll(cur, ep):
			pl.unchangedEP[k] = true
			pl.p.report.change(ActionUnchanged, "Endpoint", k.ns+"/"+k.name, pl.epFrom[k], endpointDetail(cur))
		default:
			return fmt.Errorf("pod %s/%s already has an underpool Endpoint, recording other addresses (%s) than the peer's (%s): ipamd already serves this pod; delete the pod so that it restarts on underpool, or delete that Endpoint if the pod does not use its addresses, then import again", k.ns, k.name, endpointDetail(cur), endpointDetail(ep))
		}
	}
	return nil
}

// holdsAll reports whether cur records every address of want.
func holdsAll(cur, want *v1.Endpoint) bool {
	held := map[string]bool{}
	for _, itf := range cur.Status.Interfaces {
		for _, ip := range itf.IPs {
			held[ip.Address] = true
		}
	}
	for _, itf := range want.Status.Interfaces {
		for _, ip := range itf.IPs {
			if !held[ip.Address] {
				return false
			}
		}
	}
	return true
}

func endpointDetail(ep *v1.Endpoint) string {
	var parts []string
	for _, itf := range ep.Status.Interfaces {
		var ips []string
		for _, ip := range itf.IPs {
			ips = append(ips, ip.Address+" ("+ip.Pool+")")
		}
		parts = append(parts, itf.Interface+" "+strings.Join(ips, " "))
	}
	return strings.Join(parts, "; ")
}
