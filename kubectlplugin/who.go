package kubectlplugin

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// WhoReport is the output of `who`.
type WhoReport struct {
	IP string `json:"ip"`
	// State is held, orphan (a pool marks it, no Endpoint holds it), free, or unknown (no
	// pool covers it).
	State   string   `json:"state"`
	Detail  string   `json:"detail,omitempty"`
	Holders []Holder `json:"holders"`
	Pools   []string `json:"pools"` // pools whose subnet covers the address
}

// Holder is one attachment holding the address, from its pod's Endpoint.
type Holder struct {
	Pod         string     `json:"pod"`
	Interface   string     `json:"interface"`
	Network     string     `json:"network,omitempty"`
	ContainerID string     `json:"containerID"`
	Node        string     `json:"node"`
	Since       time.Time  `json:"since"`
	Detached    *time.Time `json:"detached,omitempty"`
	Owner       string     `json:"owner,omitempty"`
	Pool        string     `json:"pool"`
	Address     string     `json:"address"`
	// PodState is the pod object's state now: its phase, or why it no longer owns the address.
	PodState string `json:"podState"`
}

func newWhoCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:     "who IP",
		Short:   "Which pod holds an address: interface, container, node, since when, workload, pool",
		Example: "  kubectl underpool who 10.250.1.7\n  kubectl underpool who fd00:250::12 -o yaml",
		Args:    exactArgs(1, "who needs one IP address, e.g. kubectl underpool who 10.250.1.7"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.checkOutput(); err != nil {
				return err
			}
			addr, err := parseIP(args[0])
			if err != nil {
				return err
			}
			c, err := o.Client()
			if err != nil {
				return err
			}
			report, err := Who(cmd.Context(), c, addr, time.Now())
			if err != nil {
				return err
			}
			return o.print(report, func(w io.Writer) { whoTable(w, report, time.Now()) })
		},
	}
}

func exactArgs(n int, usage string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s (got %d arguments)", usage, len(args))
		}
		return nil
	}
}

func parseIP(text string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(strings.Split(strings.TrimSpace(text), "/")[0])
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address: write e.g. 10.250.1.7 or fd00:250::12", text)
	}
	return addr.Unmap(), nil
}

// Who finds the attachments holding addr and what the pools say of it.
func Who(ctx context.Context, c client.Reader, addr netip.Addr, now time.Time) (*WhoReport, error) {
	var eps v1.EndpointList
	if err := c.List(ctx, &eps); err != nil {
		return nil, fmt.Errorf("listing Endpoints: %w", err)
	}
	pools, err := loadPools(ctx, c, now)
	if err != nil {
		return nil, err
	}
	r := &WhoReport{IP: addr.String(), Holders: []Holder{}, Pools: []string{}}
	for i := range eps.Items {
		ep := &eps.Items[i]
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				p, err := netip.ParsePrefix(ip.Address)
				if err != nil || p.Addr().Unmap() != addr {
					continue
				}
				h, err := holderOf(ctx, c, ep, &itf, ip)
				if err != nil {
					return nil, err
				}
				r.Holders = append(r.Holders, h)
			}
		}
	}
	var marking, problems []string
	for _, p := range pools.order {
		if p.covers(addr) {
			r.Pools = append(r.Pools, p.Name)
			if p.holds(addr) {
				marking = append(marking, p.Name)
			}
			if p.Problem != "" {
				problems = append(problems, "IPPool "+p.Name+": "+p.Problem)
			}
		}
	}
	switch {
	case len(r.Holders) > 1:
		r.State, r.Detail = "held", fmt.Sprintf("held by %d attachments: if they are live pods on different sandboxes this is a duplicate; file a bug with this output", len(r.Holders))
	case len(r.Holders) == 1:
		r.State = "held"
		if len(marking) == 0 {
			r.Detail = fmt.Sprintf("pool %s does not mark it allocated: ipamd re-marks it when it reconciles (restart ipamd on %s to force it)", r.Holders[0].Pool, r.Holders[0].Node)
		}
	case len(marking) > 0:
		r.State, r.Detail = "orphan", fmt.Sprintf("PoolAllocation %s marks it allocated but no Endpoint holds it: the orphan sweep frees it after its grace (see kubectl underpool gc --dry-run)", strings.Join(marking, ", "))
	case len(r.Pools) > 0:
		r.State, r.Detail = "free", "no Endpoint holds it and no pool marks it allocated"
	default:
		r.State, r.Detail = "unknown", "no IPPool's subnet covers it: underpool does not manage this address"
	}
	if len(problems) > 0 { // ipamd hands out nothing of such a pool: its marks mean nothing yet
		r.Detail = strings.TrimPrefix(r.Detail+"; "+strings.Join(problems, "; "), "; ")
	}
	return r, nil
}

func holderOf(ctx context.Context, c client.Reader, ep *v1.Endpoint, itf *v1.EndpointInterface, ip v1.EndpointIP) (Holder, error) {
	h := Holder{Pod: ep.Namespace + "/" + ep.Name, Interface: itf.Interface, Network: itf.Network, ContainerID: itf.ContainerID,
		Node: ep.Status.Node, Since: itf.Created.Time, Pool: ip.Pool, Address: ip.Address}
	if itf.Detached != nil {
		t := itf.Detached.Time
		h.Detached = &t
	}
	if ep.Status.OwnerKind != "" {
		h.Owner = ep.Status.OwnerKind + "/" + ep.Status.OwnerName
	}
	pod := &corev1.Pod{}
	err := c.Get(ctx, client.ObjectKey{Namespace: ep.Namespace, Name: ep.Name}, pod)
	switch {
	case apierrors.IsNotFound(err):
		h.PodState = "pod gone: recycling frees the address"
	case err != nil:
		return Holder{}, fmt.Errorf("reading pod %s: %w", h.Pod, err)
	case uidOf(itf, ep) != "" && uidOf(itf, ep) != string(pod.UID):
		h.PodState = "a newer pod of that name (UID " + string(pod.UID) + ") exists"
	default:
		h.PodState = string(pod.Status.Phase)
		if pod.DeletionTimestamp != nil {
			h.PodState += " (terminating)"
		}
	}
	return h, nil
}

func uidOf(itf *v1.EndpointInterface, ep *v1.Endpoint) string {
	if itf.PodUID != "" {
		return itf.PodUID
	}
	return ep.Status.PodUID
}

func whoTable(w io.Writer, r *WhoReport, now time.Time) {
	row(w, "IP:", r.IP)
	row(w, "STATE:", r.State)
	if r.Detail != "" {
		row(w, "DETAIL:", r.Detail)
	}
	row(w, "POOLS COVERING IT:", strings.Join(r.Pools, ", "))
	for _, h := range r.Holders {
		fmt.Fprintln(w)
		row(w, "POD:", h.Pod+" ("+h.PodState+")")
		itf := h.Interface
		if h.Network != "" {
			itf += " (network " + h.Network + ")"
		}
		row(w, "INTERFACE:", itf)
		row(w, "ADDRESS:", h.Address+" from pool "+h.Pool)
		row(w, "CONTAINER:", h.ContainerID)
		row(w, "NODE:", h.Node)
		row(w, "SINCE:", h.Since.UTC().Format(time.RFC3339)+" ("+age(h.Since, now)+" ago)")
		if h.Detached != nil {
			row(w, "DETACHED:", h.Detached.UTC().Format(time.RFC3339)+": sandbox gone, kept for the StatefulSet pod's successor")
		}
		row(w, "OWNER:", h.Owner)
	}
}
