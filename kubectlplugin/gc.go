package kubectlplugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// maxListedOrphans bounds the addresses listed per pool; the count is always exact.
const maxListedOrphans = 1000

// GCReport is the output of `gc --dry-run`.
type GCReport struct {
	Grace string `json:"grace"`
	// Recycle are the attachments recycling would free now; Later those it would free once
	// they are older than the grace; Kept the detached ones kept for a StatefulSet successor.
	Recycle []GCAttachment `json:"recycle"`
	Later   []GCAttachment `json:"later"`
	Kept    []GCAttachment `json:"kept"`
	// EmptyEndpoints hold nothing; recycling deletes them.
	EmptyEndpoints []string `json:"emptyEndpoints"`
	// Orphans are pool addresses no Endpoint holds, per pool; the sweep frees them.
	Orphans []GCOrphans `json:"orphans"`
	// Unmarked are addresses an Endpoint holds that the pool does not mark; nothing is
	// freed, ipamd re-marks them when it reconciles.
	Unmarked []string `json:"unmarked"`
	// Unjudged are attachments that could not be judged (an API error), and pools whose
	// spec or allocation state does not parse (ipamd refuses them; the sweep frees nothing of them).
	Unjudged []string `json:"unjudged"`
}

// GCAttachment is one attachment and the verdict on it.
type GCAttachment struct {
	Pod         string    `json:"pod"`
	Interface   string    `json:"interface"`
	ContainerID string    `json:"containerID"`
	Node        string    `json:"node"`
	IPs         []string  `json:"ips"`
	Created     time.Time `json:"created"`
	Reason      string    `json:"reason,omitempty"`
	Why         string    `json:"why"`
}

// GCOrphans are one pool's addresses that no Endpoint holds.
type GCOrphans struct {
	Pool  string   `json:"pool"`
	Count uint64   `json:"count"`
	IPs   []string `json:"ips"` // at most maxListedOrphans
}

func newGCCommand(o *Options) *cobra.Command {
	var dryRun bool
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "gc --dry-run",
		Short: "What recycling and the orphan sweep would free now, and why (never frees anything)",
		Long: `Shows what underpool's garbage collection would free now, and why, in every namespace.
Only --dry-run is supported: this plugin never frees anything. Freeing is done by ipamd's
recycling on each node (every --gc-interval) and the elected controller's orphan sweep,
each after a fresh read that proves the owner gone.

Recycling frees an attachment (an entry of a pod's Endpoint) when:
  pod-deleted                                 the pod object is gone
  pod-replaced                                a pod of that name exists with another UID (no StatefulSet)
  sandbox-replaced                            the pod holds a newer attachment on that interface
  statefulset-scaled-down-or-deleted          the StatefulSet is gone or no longer wants the ordinal
  statefulset-successor-running-without-them  the set's new pod runs without the addresses
The orphan sweep frees pool addresses that no Endpoint holds (left by a crash between
the pool commit and the Endpoint write) once seen unheld for its grace in two sweeps.`,
		Example: "  kubectl underpool gc --dry-run\n  kubectl underpool gc --dry-run --grace 0 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !dryRun {
				return errors.New("gc only reports what would be freed: pass --dry-run. Freeing is ipamd's recycling and the controller's orphan sweep; they run on their own")
			}
			if err := o.checkOutput(); err != nil {
				return err
			}
			c, err := o.Client()
			if err != nil {
				return err
			}
			report, err := GC(cmd.Context(), c, time.Now(), grace)
			if err != nil {
				return err
			}
			return o.print(report, func(w io.Writer) { gcTable(w, report) })
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report only (required: nothing else is supported)")
	cmd.Flags().DurationVar(&grace, "grace", 2*time.Minute, "attachments younger than this are not recycled yet (ipamd's --gc-grace)")
	return cmd
}

// GC judges every attachment and pool address as recycling and the orphan sweep would now.
func GC(ctx context.Context, c client.Reader, now time.Time, grace time.Duration) (*GCReport, error) {
	var eps v1.EndpointList
	if err := c.List(ctx, &eps); err != nil {
		return nil, fmt.Errorf("listing Endpoints: %w", err)
	}
	pools, err := loadPools(ctx, c, now)
	if err != nil {
		return nil, err
	}
	r := &GCReport{Grace: grace.String(), Recycle: []GCAttachment{}, Later: []GCAttachment{}, Kept: []GCAttachment{},
		EmptyEndpoints: []string{}, Orphans: []GCOrphans{}, Unmarked: []string{}, Unjudged: []string{}}
	held := map[string]*allocator.RunSet{} // pool -> offsets Endpoints hold
	for i := range eps.Items {
		ep := &eps.Items[i]
		if len(ep.Status.Interfaces) == 0 {
			if now.Sub(ep.CreationTimestamp.Time) >= grace {
				r.EmptyEndpoints = append(r.EmptyEndpoints, ep.Namespace+"/"+ep.Name)
			}
			continue
		}
		for j := range ep.Status.Interfaces {
			itf := &ep.Status.Interfaces[j]
			a := GCAttachment{Pod: ep.Namespace + "/" + ep.Name, Interface: itf.Interface, ContainerID: itf.ContainerID,
				Node: ep.Status.Node, Created: itf.Created.Time, IPs: []string{}}
			for _, ip := range itf.IPs {
				a.IPs = append(a.IPs, ip.Address)
				markHeld(pools, held, ip, &r.Unmarked, a.Pod)
			}
			reason, why, err := verdict(ctx, c, ep, itf)
			if err != nil {
				r.Unjudged = append(r.Unjudged, fmt.Sprintf("%s %s: %v", a.Pod, itf.Interface, err))
				continue
			}
			a.Reason, a.Why = reason, why
			switch {
			case reason != "" && now.Sub(itf.Created.Time) < grace:
				a.Why += fmt.Sprintf("; younger than the %s grace", grace)
				r.Later = append(r.Later, a)
			case reason != "":
				r.Recycle = append(r.Recycle, a)
			case itf.Detached != nil:
				r.Kept = append(r.Kept, a)
			}
		}
	}
	for _, p := range pools.order {
		if p.Problem != "" { // the sweep iterates nothing of a pool ipamd refuses
			r.Unjudged = append(r.Unjudged, fmt.Sprintf("IPPool %s: %s", p.Name, p.Problem))
			continue
		}
		var mine allocator.RunSet
		if h := held[p.Name]; h != nil {
			mine = *h
		}
		orphans := p.allocated.Subtract(mine)
		if orphans.Empty() {
			continue
		}
		o := GCOrphans{Pool: p.Name, Count: orphans.Count(), IPs: []string{}}
	list:
		for _, run := range orphans.Runs() {
			for off := run.Lo; ; off++ {
				if len(o.IPs) == maxListedOrphans {
					break list
				}
				o.IPs = append(o.IPs, p.view.Addr(off).String())
				if off == run.Hi {
					break
				}
			}
		}
		r.Orphans = append(r.Orphans, o)
	}
	sort.Strings(r.Unmarked)
	return r, nil
}

// markHeld records that an Endpoint holds ip, and notes an address its pool does not mark.
func markHeld(pools *clusterPools, held map[string]*allocator.RunSet, ip v1.EndpointIP, unmarked *[]string, pod string) {
	p := pools.byName[ip.Pool]
	prefix, err := netip.ParsePrefix(ip.Address)
	if p == nil || p.view == nil || err != nil {
		return
	}
	off, ok := p.view.Offset(prefix.Addr())
	if !ok {
		return
	}
	if held[ip.Pool] == nil {
		held[ip.Pool] = &allocator.RunSet{}
	}
	held[ip.Pool].Add(off)
	if !p.allocated.Contains(off) {
		*unmarked = append(*unmarked, fmt.Sprintf("%s (pool %s, pod %s)", prefix.Addr(), ip.Pool, pod))
	}
}

func gcTable(w io.Writer, r *GCReport) {
	section := func(title string, list []GCAttachment) {
		if len(list) == 0 {
			return
		}
		fmt.Fprintln(w, title)
		row(w, "  POD", "INTERFACE", "IPS", "NODE", "CONTAINER", "REASON", "WHY")
		for _, a := range list {
			row(w, "  "+a.Pod, a.Interface, strings.Join(a.IPs, ","), a.Node, shortID(a.ContainerID), a.Reason, a.Why)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "DRY RUN: nothing is freed.")
	fmt.Fprintln(w)
	section("Recycling would free now:", r.Recycle)
	section("Recycling would free once the grace ("+r.Grace+") has passed:", r.Later)
	section("Kept for a StatefulSet successor (detached):", r.Kept)
	if len(r.EmptyEndpoints) > 0 {
		fmt.Fprintln(w, "Endpoints holding nothing (recycling deletes them):\t"+strings.Join(r.EmptyEndpoints, ", "))
	}
	if len(r.Orphans) > 0 {
		fmt.Fprintln(w, "Orphan sweep would free (pool addresses no Endpoint holds, once unheld past its grace in two sweeps):")
		row(w, "  POOL", "COUNT", "ADDRESSES")
		for _, o := range r.Orphans {
			ips := strings.Join(o.IPs, ",")
			if uint64(len(o.IPs)) < o.Count {
				ips += fmt.Sprintf(",... (%d more)", o.Count-uint64(len(o.IPs)))
			}
			row(w, "  "+o.Pool, count(o.Count), ips)
		}
		fmt.Fprintln(w)
	}
	if len(r.Unmarked) > 0 {
		fmt.Fprintln(w, "Held but not marked in their pool (ipamd re-marks them when it reconciles; nothing is freed):")
		for _, u := range r.Unmarked {
			fmt.Fprintln(w, "  "+u)
		}
	}
	if len(r.Unjudged) > 0 {
		fmt.Fprintln(w, "Not judged (API errors, pools ipamd refuses):")
		for _, u := range r.Unjudged {
			fmt.Fprintln(w, "  "+u)
		}
	}
	if len(r.Recycle)+len(r.Later)+len(r.EmptyEndpoints)+len(r.Orphans) == 0 {
		fmt.Fprintln(w, "Nothing to free: every attachment's pod lives and every allocated address is held.")
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
