package kubectlplugin

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// `import` is the one subcommand that writes: it reads a peer IPAM's objects (as
// unstructured, so underpool does not depend on the peer's Go module) and creates the
// underpool Subnets, IPPools, ReservedIPs and Endpoints that keep every live pod's address.
// It never deletes or changes the peer's objects, and it checks everything before it
// writes anything: a conflict refuses the whole import.

// ImportReport is what `import` did, or would do with --dry-run.
type ImportReport struct {
	Source  string         `json:"source"`
	DryRun  bool           `json:"dryRun"`
	Changes []ImportChange `json:"changes"`
	// Skipped are peer addresses not imported, with why (the pod is gone, mostly).
	Skipped []ImportSkip `json:"skipped"`
	// Notes are what the translation could not carry over.
	Notes []string `json:"notes,omitempty"`
}

// ImportChange is one underpool object created, left as it is, or whose status is extended.
type ImportChange struct {
	Action string `json:"action"` // create, unchanged, mark (an existing pool's status gains addresses)
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	From   string `json:"from,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// ImportSkip is one peer address that is not imported.
type ImportSkip struct {
	Address string `json:"address"`
	From    string `json:"from"`
	Pod     string `json:"pod,omitempty"`
	Reason  string `json:"reason"`
}

// The peer-neutral form every reader produces.
type peerPool struct {
	from string // e.g. "SpiderIPPool v4-pool"
	name string // the underpool IPPool name
	spec v1.IPPoolSpec
}

type peerAlloc struct {
	from        string
	pool        string // underpool IPPool name
	ip          netip.Addr
	namespace   string
	pod         string
	podUID      string // empty when the peer does not record it
	ifName      string
	containerID string
	node        string
}

type peerReserved struct {
	from, name string
	ips        []string
}

type peerSubnet struct {
	from, name string
	spec       v1.SubnetSpec
}

type peerState struct {
	subnets  []peerSubnet
	pools    []peerPool
	reserved []peerReserved
	allocs   []peerAlloc
	skipped  []ImportSkip
	notes    []string
}

type importOptions struct {
	*Options
	dryRun bool
	prefix string
}

func newImportCommand(o *Options) *cobra.Command {
	opts := &importOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "import spiderpool|whereabouts",
		Short: "Create underpool pools, reserved IPs and Endpoints from Spiderpool's or whereabouts' objects",
		Long: `import reads the objects of another IPAM and creates the underpool objects that keep
every live pod's address:

  spiderpool    SpiderSubnet -> Subnet, SpiderIPPool -> IPPool (status.allocatedIPs and
                SpiderEndpoints -> Endpoints), SpiderReservedIP -> ReservedIP
  whereabouts   IPPool (spec.range, spec.allocations) -> IPPool and Endpoints;
                OverlappingRangeIPReservations are checked against the pools

Addresses of pods that are gone (no such pod, or another pod of that name) are not
imported and are listed as skipped. Nothing is written when any object conflicts with an
existing underpool object. The peer's objects are never changed or deleted: uninstall the
peer IPAM yourself once the import is done. Run with --dry-run first.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"spiderpool", "whereabouts"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.checkOutput(); err != nil {
				return err
			}
			c, err := o.Client()
			if err != nil {
				return err
			}
			rep, err := opts.run(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			return o.print(rep, func(w io.Writer) { importTable(w, rep) })
		},
	}
	cmd.Flags().BoolVar(&opts.dryRun, "dry-run", false, "print what would be created; write nothing")
	cmd.Flags().StringVar(&opts.prefix, "prefix", "", "prefix for the names of the created Subnets, IPPools and ReservedIPs")
	return cmd
}

func (o *importOptions) run(ctx context.Context, c client.Client, source string) (*ImportReport, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	var (
		st  *peerState
		err error
	)
	switch source {
	case "spiderpool":
		st, err = readSpiderpool(ctx, c, o.prefix)
	case "whereabouts":
		st, err = readWhereabouts(ctx, c, o.prefix)
	default:
		return nil, fmt.Errorf("unknown source %q: use `kubectl underpool import spiderpool` or `kubectl underpool import whereabouts`", source)
	}
	if err != nil {
		return nil, err
	}
	p, err := plan(ctx, c, st)
	if err != nil {
		return nil, err
	}
	p.report.Source, p.report.DryRun = source, o.dryRun
	if o.dryRun {
		return &p.report, nil
	}
	if err := p.apply(ctx, c); err != nil {
		return nil, err
	}
	return &p.report, nil
}

// listPeer lists a peer kind; a kind the apiserver does not serve (the peer was never
// installed) lists nothing.
func listPeer(ctx context.Context, c client.Client, gvk schema.GroupVersionKind) ([]unstructured.Unstructured, error) {
	l := &unstructured.UnstructuredList{}
	l.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := c.List(ctx, l); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) || isNoMatch(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing %s: %w: the import needs get/list on %s", gvk.Kind, err, gvk.GroupKind())
	}
	return l.Items, nil
}

func isNoMatch(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "no matches for kind") || strings.Contains(err.Error(), "could not find the requested resource"))
}

var invalidName = regexp.MustCompile(`[^a-z0-9.-]+`)

// poolName derives an underpool object name from a peer object's name.
func poolName(prefix, name string) string {
	n := invalidName.ReplaceAllString(strings.ToLower(prefix+name), "-")
	n = strings.Trim(n, "-.")
	if len(n) > 253 {
		n = strings.Trim(n[:253], "-.")
	}
	return n
}

// importPlan is everything checked and ready to write.
type importPlan struct {
	report    ImportReport
	subnets   []*v1.Subnet
	pools     []*v1.IPPool        // to create, status as it is to be written
	marks     map[string][]uint64 // existing pools: offsets to add to status.allocated
	reserved  []*v1.ReservedIP
	endpoints []*v1.Endpoint
}

// plan turns the peer's state into underpool objects and refuses conflicts.
func plan(ctx context.Context, c client.Client, st *peerState) (*importPlan, error) {
	p := &importPlan{marks: map[string][]uint64{}}
	p.report.Skipped = append(p.report.Skipped, st.skipped...)
	p.report.Notes = append(p.report.Notes, st.notes...)

	// Subnets and reserved IPs: create, or leave an identical one alone.
	for _, s := range st.subnets {
		cur := &v1.Subnet{}
		err := c.Get(ctx, client.ObjectKey{Name: s.name}, cur)
		switch {
		case err == nil && equality.Semantic.DeepEqual(cur.Spec, s.spec):
			p.change("unchanged", "Subnet", s.name, s.from, s.spec.Subnet)
		case err == nil:
			return nil, fmt.Errorf("%s would become Subnet %s, but Subnet %s exists with another spec: delete it, or pass --prefix to import under other names", s.from, s.name, s.name)
		case apierrors.IsNotFound(err):
			p.subnets = append(p.subnets, &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: s.name, Labels: importedLabel()}, Spec: s.spec})
			p.change("create", "Subnet", s.name, s.from, s.spec.Subnet)
		default:
			return nil, fmt.Errorf("reading Subnet %s: %w", s.name, err)
		}
	}
	for _, r := range st.reserved {
		cur := &v1.ReservedIP{}
		spec := v1.ReservedIPSpec{IPs: r.ips}
		err := c.Get(ctx, client.ObjectKey{Name: r.name}, cur)
		switch {
		case err == nil && equality.Semantic.DeepEqual(cur.Spec, spec):
			p.change("unchanged", "ReservedIP", r.name, r.from, strings.Join(r.ips, ","))
		case err == nil:
			return nil, fmt.Errorf("%s would become ReservedIP %s, but ReservedIP %s exists with other addresses: delete it, or pass --prefix to import under other names", r.from, r.name, r.name)
		case apierrors.IsNotFound(err):
			p.reserved = append(p.reserved, &v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: r.name, Labels: importedLabel()}, Spec: spec})
			p.change("create", "ReservedIP", r.name, r.from, strings.Join(r.ips, ","))
		default:
			return nil, fmt.Errorf("reading ReservedIP %s: %w", r.name, err)
		}
	}

	// Pools: parse each, then refuse name clashes and overlaps, with existing pools and
	// among the imported ones.
	existing := &v1.IPPoolList{}
	if err := c.List(ctx, existing); err != nil {
		return nil, fmt.Errorf("listing IPPools: %w", err)
	}
	byName := map[string]*v1.IPPool{}
	for i := range existing.Items {
		byName[existing.Items[i].Name] = &existing.Items[i]
	}
	views := map[string]*allocator.PoolView{}
	from := map[string]string{}
	var fps []struct {
		name string
		fp   allocator.Footprint
	}
	for _, pp := range st.pools {
		if prev, dup := from[pp.name]; dup {
			return nil, fmt.Errorf("%s and %s would both become IPPool %s: import them with different --prefix values, one at a time", prev, pp.from, pp.name)
		}
		from[pp.name] = pp.from
		view, err := allocator.NewPool(pp.name, &pp.spec)
		if err != nil {
			return nil, fmt.Errorf("%s cannot become IPPool %s: %v: fix the peer object first", pp.from, pp.name, err)
		}
		views[pp.name] = view
		fp := allocator.Footprint{Prefix: view.Prefix, Set: view.Usable}
		if cur, ok := byName[pp.name]; ok && !equality.Semantic.DeepEqual(cur.Spec, pp.spec) {
			return nil, fmt.Errorf("%s would become IPPool %s, but IPPool %s exists with another spec (subnet %s): delete it if it is unused, or pass --prefix to import under other names", pp.from, pp.name, pp.name, cur.Spec.Subnet)
		}
		for i := range existing.Items {
			other := &existing.Items[i]
			if other.Name == pp.name {
				continue
			}
			ofp, ok := allocator.FootprintOf(other.Name, &other.Spec)
			if !ok {
				continue
			}
			if ip, shared := allocator.FirstShared(fp, ofp); shared {
				return nil, fmt.Errorf("%s would become IPPool %s, whose addresses overlap IPPool %s (first shared address %s): narrow IPPool %s with spec.ips/spec.excludeIPs or delete it, then import again", pp.from, pp.name, other.Name, ip, other.Name)
			}
		}
		for _, o := range fps {
			if ip, shared := allocator.FirstShared(fp, o.fp); shared {
				return nil, fmt.Errorf("%s and %s overlap (first shared address %s): underpool pools may not share addresses; narrow one of them (ips/excludeIPs) before importing", from[o.name], pp.from, ip)
			}
		}
		fps = append(fps, struct {
			name string
			fp   allocator.Footprint
		}{pp.name, fp})
	}

	// Addresses: keep those of live pods, one Endpoint per pod.
	pods := map[importPodKey]*corev1.Pod{}
	gone := map[importPodKey]string{}
	eps := map[importPodKey]*v1.Endpoint{}
	var epOrder []importPodKey
	epFrom := map[importPodKey]string{}
	allocated := map[string]*allocator.RunSet{}
	seen := map[netip.Addr]string{}
	sort.SliceStable(st.allocs, func(i, j int) bool { return st.allocs[i].ip.Less(st.allocs[j].ip) })
	for _, a := range st.allocs {
		view := views[a.pool]
		skip := func(why string) {
			p.report.Skipped = append(p.report.Skipped, ImportSkip{Address: a.ip.String(), From: a.from, Pod: a.namespace + "/" + a.pod, Reason: why})
		}
		if view == nil {
			skip("its pool is not imported")
			continue
		}
		off, ok := view.Offset(a.ip)
		if !ok {
			skip(fmt.Sprintf("outside the pool's subnet %s", view.Prefix))
			continue
		}
		if a.namespace == "" || a.pod == "" {
			skip("the peer records no pod for it")
			continue
		}
		k := importPodKey{a.namespace, a.pod}
		if _, known := pods[k]; !known && gone[k] == "" {
			pod := &corev1.Pod{}
			switch err := c.Get(ctx, client.ObjectKey{Namespace: a.namespace, Name: a.pod}, pod); {
			case apierrors.IsNotFound(err):
				gone[k] = "the pod no longer exists"
			case err != nil:
				return nil, fmt.Errorf("reading pod %s/%s: %w", a.namespace, a.pod, err)
			case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
				gone[k] = fmt.Sprintf("the pod has finished (phase %s): its sandbox is gone", pod.Status.Phase)
			default:
				pods[k] = pod
			}
		}
		if why := gone[k]; why != "" {
			skip(why)
			continue
		}
		pod := pods[k]
		if a.podUID != "" && a.podUID != string(pod.UID) {
			skip(fmt.Sprintf("the address was given to pod UID %s; pod %s/%s is now UID %s, another incarnation", a.podUID, a.namespace, a.pod, pod.UID))
			continue
		}
		if holder, dup := seen[a.ip]; dup {
			skip("the address is recorded twice; kept for " + holder)
			continue
		}
		seen[a.ip] = a.namespace + "/" + a.pod
		if allocated[a.pool] == nil {
			allocated[a.pool] = &allocator.RunSet{}
		}
		allocated[a.pool].Add(off)

		ep := eps[k]
		if ep == nil {
			ep = &v1.Endpoint{
				ObjectMeta: metav1.ObjectMeta{Namespace: a.namespace, Name: a.pod, Labels: importedLabel(), Finalizers: []string{v1.EndpointProtection}},
				Status:     v1.EndpointStatus{PodUID: string(pod.UID), Node: pod.Spec.NodeName},
			}
			if ref := metav1.GetControllerOf(pod); ref != nil {
				ep.Status.OwnerKind, ep.Status.OwnerName = ref.Kind, ref.Name
			}
			if ep.Status.Node == "" {
				ep.Status.Node = a.node
			}
			eps[k] = ep
			epOrder = append(epOrder, k)
			epFrom[k] = a.from
		}
		ip := v1.EndpointIP{Address: view.Prefixed(off).String(), Pool: a.pool, Vlan: view.Vlan}
		if view.Gateway.IsValid() {
			ip.Gateway = view.Gateway.String()
		}
		var itf *v1.EndpointInterface
		for i := range ep.Status.Interfaces {
			if x := &ep.Status.Interfaces[i]; x.ContainerID == a.containerID && x.Interface == a.ifName {
				itf = x
			}
		}
		if itf == nil {
			ep.Status.Interfaces = append(ep.Status.Interfaces, v1.EndpointInterface{
				ContainerID: a.containerID, Interface: a.ifName, PodUID: string(pod.UID), Created: metav1.NewTime(time.Now().UTC().Truncate(time.Second)),
			})
			itf = &ep.Status.Interfaces[len(ep.Status.Interfaces)-1]
		}
		itf.IPs = append(itf.IPs, ip)
	}

	// Endpoints: create; one that already records these addresses is left alone; one
	// that records others (ipamd already serves this pod) refuses the import.
	unchangedEP := map[importPodKey]bool{}
	for _, k := range epOrder {
		ep := eps[k]
		cur := &v1.Endpoint{}
		err := c.Get(ctx, client.ObjectKey{Namespace: k.ns, Name: k.name}, cur)
		switch {
		case apierrors.IsNotFound(err):
			p.endpoints = append(p.endpoints, ep)
			p.change("create", "Endpoint", k.ns+"/"+k.name, epFrom[k], endpointDetail(ep))
		case err != nil:
			return nil, fmt.Errorf("reading Endpoint %s/%s: %w", k.ns, k.name, err)
		case holdsAll(cur, ep):
			unchangedEP[k] = true
			p.change("unchanged", "Endpoint", k.ns+"/"+k.name, epFrom[k], endpointDetail(cur))
		default:
			return nil, fmt.Errorf("pod %s/%s already has an underpool Endpoint, recording other addresses (%s) than the peer's (%s): ipamd already serves this pod; delete the pod so that it restarts on underpool, or delete that Endpoint if the pod does not use its addresses, then import again", k.ns, k.name, endpointDetail(cur), endpointDetail(ep))
		}
	}

	// Pools: new ones carry their allocated set; an identical existing one gains the
	// addresses it does not mark yet, unless they are marked for another pod.
	for _, pp := range st.pools {
		view := views[pp.name]
		set := allocator.RunSet{}
		if allocated[pp.name] != nil {
			set = *allocated[pp.name]
		}
		cur, exists := byName[pp.name]
		if !exists {
			pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: pp.name, Labels: importedLabel()}, Spec: pp.spec}
			pool.Status = v1.IPPoolStatus{Allocated: set.String(), AllocatedIPCount: int64(set.Count()), TotalIPCount: view.TotalCount()}
			p.pools = append(p.pools, pool)
			p.change("create", "IPPool", pp.name, pp.from, fmt.Sprintf("%s, %d allocated%s", pp.spec.Subnet, set.Count(), listed(view, set)))
			continue
		}
		have, err := allocator.ParseRunSet(cur.Status.Allocated)
		if err != nil {
			return nil, fmt.Errorf("IPPool %s status.allocated %q does not parse: %v: fix or delete the pool", cur.Name, cur.Status.Allocated, err)
		}
		var add []uint64
		for _, r := range set.Runs() {
			for o := r.Lo; ; o++ {
				if !have.Contains(o) {
					add = append(add, o)
				} else if ep := endpointOf(eps, view.Addr(o), pp.name); ep != nil && !unchangedEP[importPodKey{ep.Namespace, ep.Name}] {
					return nil, fmt.Errorf("IPPool %s already marks %s allocated, but not for pod %s/%s that the peer gave it to: find its holder with `kubectl underpool who %s`", pp.name, view.Addr(o), ep.Namespace, ep.Name, view.Addr(o))
				}
				if o == r.Hi {
					break
				}
			}
		}
		if len(add) == 0 {
			p.change("unchanged", "IPPool", pp.name, pp.from, pp.spec.Subnet)
			continue
		}
		p.marks[pp.name] = add
		addSet := allocator.NewRunSet()
		for _, o := range add {
			addSet.Add(o)
		}
		p.change("mark", "IPPool", pp.name, pp.from, fmt.Sprintf("status.allocated gains %d%s", len(add), listed(view, addSet)))
	}
	// report in the order of writing
	rank := map[string]int{"Subnet": 0, "ReservedIP": 1, "IPPool": 2, "Endpoint": 3}
	sort.SliceStable(p.report.Changes, func(i, j int) bool { return rank[p.report.Changes[i].Kind] < rank[p.report.Changes[j].Kind] })
	return p, nil
}

type importPodKey struct{ ns, name string }

func importedLabel() map[string]string {
	return map[string]string{"underpool.io/imported": "true"}
}

func (p *importPlan) change(action, kind, name, from, detail string) {
	p.report.Changes = append(p.report.Changes, ImportChange{Action: action, Kind: kind, Name: name, From: from, Detail: detail})
}

// endpointOf returns the planned Endpoint that holds addr from pool.
func endpointOf(eps map[importPodKey]*v1.Endpoint, addr netip.Addr, pool string) *v1.Endpoint {
	for _, ep := range eps {
		for _, itf := range ep.Status.Interfaces {
			for _, ip := range itf.IPs {
				if pfx, err := netip.ParsePrefix(ip.Address); err == nil && ip.Pool == pool && pfx.Addr() == addr {
					return ep
				}
			}
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

// listed names up to 8 addresses of set.
func listed(view *allocator.PoolView, set allocator.RunSet) string {
	const most = 8
	var out []string
	for _, r := range set.Runs() {
		for o := r.Lo; len(out) < most; o++ {
			out = append(out, view.Addr(o).String())
			if o == r.Hi {
				break
			}
		}
	}
	if len(out) == 0 {
		return ""
	}
	more := ""
	if set.Count() > uint64(len(out)) {
		more = fmt.Sprintf(" and %d more", set.Count()-uint64(len(out)))
	}
	return ": " + strings.Join(out, ", ") + more
}

// apply writes the plan: Subnets, ReservedIPs, pools (spec, then status), the marks on
// existing pools, then Endpoints. Each object is created once; a re-run after a failure
// finds what was created and leaves it alone.
func (p *importPlan) apply(ctx context.Context, c client.Client) error {
	for _, s := range p.subnets {
		if err := c.Create(ctx, s); err != nil {
			return fmt.Errorf("creating Subnet %s: %w", s.Name, err)
		}
	}
	for _, r := range p.reserved {
		if err := c.Create(ctx, r); err != nil {
			return fmt.Errorf("creating ReservedIP %s: %w", r.Name, err)
		}
	}
	for _, pool := range p.pools {
		status := pool.Status
		if err := c.Create(ctx, pool); err != nil {
			return fmt.Errorf("creating IPPool %s: %w", pool.Name, err)
		}
		pool.Status = status
		if err := c.Status().Update(ctx, pool); err != nil {
			return fmt.Errorf("writing IPPool %s status (allocated %s): %w: run the import again to finish", pool.Name, status.Allocated, err)
		}
	}
	for name, offs := range p.marks {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			pool := &v1.IPPool{}
			if err := c.Get(ctx, client.ObjectKey{Name: name}, pool); err != nil {
				return err
			}
			set, err := allocator.ParseRunSet(pool.Status.Allocated)
			if err != nil {
				return err
			}
			for _, o := range offs {
				set.Add(o)
			}
			pool.Status.Allocated, pool.Status.AllocatedIPCount = set.String(), int64(set.Count())
			return c.Status().Update(ctx, pool)
		})
		if err != nil {
			return fmt.Errorf("marking addresses in IPPool %s: %w: run the import again to finish", name, err)
		}
	}
	for _, ep := range p.endpoints {
		if err := c.Create(ctx, ep); err != nil {
			return fmt.Errorf("creating Endpoint %s/%s: %w: run the import again to finish", ep.Namespace, ep.Name, err)
		}
	}
	return nil
}

func importTable(w io.Writer, rep *ImportReport) {
	sign := map[string]string{"create": "+", "unchanged": "=", "mark": "~"}
	verb := "created"
	if rep.DryRun {
		verb = "would create"
	}
	fmt.Fprintln(w, " \tKIND\tNAME\tFROM\tDETAIL")
	n := 0
	for _, ch := range rep.Changes {
		if ch.Action == "create" {
			n++
		}
		row(w, sign[ch.Action], ch.Kind, ch.Name, ch.From, ch.Detail)
	}
	for _, s := range rep.Skipped {
		row(w, "!", "skipped", s.Address, s.From, s.Pod+": "+s.Reason)
	}
	for _, note := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", note)
	}
	fmt.Fprintf(w, "%s: %s %d objects, %d addresses skipped; the %s objects are left as they are\n",
		map[bool]string{true: "dry run", false: "imported"}[rep.DryRun], verb, n, len(rep.Skipped), rep.Source)
}
