package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/bits"
	"net/netip"
	"os"
	"path/filepath"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// subnetPlan is one IPAM's private range.
type subnetPlan struct {
	Prefix  netip.Prefix
	Gateway netip.Addr // first host address; host-local and underpool never hand it out
	// First and Last bound the addresses the IPAM may hand out: the pool. With
	// --pool-size 0 they span the block (gateway and broadcast excluded), otherwise
	// exactly --pool-size addresses from the one after the gateway.
	First, Last netip.Addr
}

// planSubnets gives each IPAM its own block of 10.250.0.0/16 (the range the project's
// tests own), sized from the larger of --pods, --density and --pool-size: /24s near
// 10.250.200 for up to ~120 pods, larger aligned blocks beyond; 10.250.255.0/24 stays
// free for the node's own address. A block holds twice the pods plus network,
// broadcast and gateway, so a run that leaked every address still leaves the next run
// room to show it as a leak rather than as a cascade of "pool exhausted" failures
// (unless --pool-size asks for a pool of exactly that many addresses).
func planSubnets(pods, poolSize int) (map[string]subnetPlan, error) {
	need := max(2*pods, poolSize) + 3
	prefixLen := min(24, 32-bits.Len(uint(need-1))) // smallest block with >= need addresses
	span := 1 << (24 - prefixLen)                   // block size in units of /24 (third octet)
	// Near .200 (clear of the e2e tests' low /24s) when the blocks fit there,
	// otherwise as high as possible below the node's /24.
	const limit = 255
	start := (200 + span - 1) / span * span
	n := len(allIPAMs)
	if start+n*span > limit {
		start = (limit - n*span) / span * span
	}
	if start < 0 {
		return nil, fmt.Errorf("%d pods need %d /%d blocks, more than 10.250.0.0/16 holds", pods, n, prefixLen)
	}
	plans := map[string]subnetPlan{}
	for i, name := range allIPAMs {
		addr := netip.AddrFrom4([4]byte{10, 250, byte(start + i*span), 0})
		p := netip.PrefixFrom(addr, prefixLen)
		plan := subnetPlan{Prefix: p, Gateway: addr.Next(), First: addr.Next().Next()}
		size := 1<<(32-prefixLen) - 3 // network, gateway, broadcast
		if poolSize > 0 {
			size = poolSize
		}
		plan.Last = nthAfter(plan.First, size-1)
		plans[name] = plan
	}
	return plans, nil
}

// nthAfter is the IPv4 address n after a.
func nthAfter(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// setupEnv is what every IPAM setup may use.
type setupEnv struct {
	work        string        // the run's temp dir
	kube        client.Client // admin client of the local apiserver
	kubeconfig  string        // same identity, for whereabouts
	master      string        // macvlan parent, inside the node netns
	ipamdSocket string        // set when underpool runs
	api         *apiCounter   // the apiserver's request counts
	cpu         *cpuMeter     // CPU time of the plugins and daemons
}

// ipam is one contestant: its conflist and a way to count what it still holds.
type ipam struct {
	name     string
	conflist []byte
	// held counts the addresses the IPAM still considers allocated, read from its
	// own bookkeeping (not from ours), plus a human-readable detail.
	held func(ctx context.Context) (int, string, error)
}

// ipamOnly reports whether the contestant is an IPAM binary run as the main plugin.
func ipamOnly(name string) bool {
	return name == ipamUnderpoolIPAM || name == ipamHostLocalIPAM || name == ipamWhereaboutsIPAM
}

func setup(ctx context.Context, name string, env *setupEnv, sub subnetPlan) (*ipam, error) {
	switch name {
	case ipamUnderpool:
		return setupUnderpool(ctx, env, sub, name, true)
	case ipamUnderpoolNoChecks:
		return setupUnderpool(ctx, env, sub, name, false)
	case ipamUnderpoolIPAM:
		return setupUnderpool(ctx, env, sub, name, false)
	case ipamHostLocal, ipamHostLocalIPAM:
		return setupHostLocal(env, sub, name)
	case ipamWhereabouts, ipamWhereaboutsIPAM:
		return setupWhereabouts(ctx, env, sub, name)
	}
	return nil, fmt.Errorf("unknown IPAM %q", name)
}

// conflistFor wraps one plugin: the delegate-style contestants (host-local,
// whereabouts) hang their ipam section under macvlan; an IPAM-only contestant runs
// the IPAM binary itself as the main plugin with the same section, the way a main
// plugin hands it its netconf, and makes no link.
func conflistFor(name, cniVersion string, env *setupEnv, ipamConf map[string]any) ([]byte, error) {
	plugin := map[string]any{"type": "macvlan", "master": env.master, "mode": "bridge", "ipam": ipamConf}
	if ipamOnly(name) {
		plugin = map[string]any{"type": ipamConf["type"], "ipam": ipamConf}
	}
	return json.Marshal(map[string]any{"cniVersion": cniVersion, "name": "bench-" + name, "plugins": []any{plugin}})
}

// setupUnderpool creates the IPPool ipamd allocates from. Pods are "in" namespace
// default (it exists; ipamd records Endpoints there). The meta-plugin runs with its
// defaults (host veth, policy routing, ARP probe and announcement); checks false turns
// the underlay checks off (IP conflict probe and gratuitous ARP), so their cost shows
// side by side. The IPAM-only contestant runs underpool-ipam as the main plugin.
func setupUnderpool(ctx context.Context, env *setupEnv, sub subnetPlan, name string, checks bool) (*ipam, error) {
	pool := "bench-" + name
	obj := &v1.IPPool{
		ObjectMeta: metav1.ObjectMeta{Name: pool, Finalizers: []string{v1.PoolProtection}}, // no controller runs here to add it
		Spec: v1.IPPoolSpec{Subnet: sub.Prefix.String(), Gateway: sub.Gateway.String(),
			IPs: []string{sub.First.String() + "-" + sub.Last.String()}},
	}
	if err := env.kube.Create(ctx, obj); err != nil {
		return nil, fmt.Errorf("create IPPool %s: %w", pool, err)
	}
	logFile := filepath.Join(env.work, name+".log")
	var conf []byte
	var err error
	if ipamOnly(name) {
		conf, err = json.Marshal(map[string]any{
			"cniVersion": "1.1.0", "name": "bench-" + name,
			"plugins": []any{map[string]any{
				"type":     "underpool-ipam",
				"ipam":     map[string]any{"type": "underpool-ipam", "socket": env.ipamdSocket, "ipv4Pools": []string{pool}},
				"logFile":  logFile,
				"logLevel": "error",
			}},
		})
	} else {
		conf, err = json.Marshal(map[string]any{
			"cniVersion": "1.1.0", "name": "bench-" + name,
			"plugins": []any{map[string]any{
				"type":     "underpool",
				"delegate": map[string]any{"type": "macvlan", "master": env.master, "mode": "bridge"},
				"ipam":     map[string]any{"socket": env.ipamdSocket, "ipv4Pools": []string{pool}},
				"checks":   map[string]any{"ipConflict": checks, "announce": checks},
				// hostConnectivity and routing left out: their defaults (a host veth
				// for this underlay-only pod, policy routing) are what is measured
				"logFile":  logFile,
				"logLevel": "error",
			}},
		})
	}
	if err != nil {
		return nil, err
	}
	held := func(ctx context.Context) (int, string, error) {
		p := &v1.IPPool{}
		if err := env.kube.Get(ctx, client.ObjectKey{Name: pool}, p); err != nil {
			return 0, "", err
		}
		// the allocation state itself: the pool's status counts are a copy the elected
		// controller makes, and the bench runs no controller
		alloc := &v1.PoolAllocation{}
		if err := env.kube.Get(ctx, client.ObjectKey{Name: pool}, alloc); err != nil {
			if !apierrors.IsNotFound(err) {
				return 0, "", err
			}
			alloc = nil
		}
		// Endpoints record who holds an address; one left over is a leak as well.
		var eps v1.EndpointList
		if err := env.kube.List(ctx, &eps, client.InNamespace(metav1.NamespaceDefault)); err != nil {
			return 0, "", err
		}
		return int(v1.StateOf(p, alloc).AllocatedIPCount), fmt.Sprintf("PoolAllocation %s state.allocatedIPCount; %d Endpoint objects left", pool, len(eps.Items)), nil
	}
	return &ipam{name: name, conflist: conf, held: held}, nil
}

// setupHostLocal points host-local at a data dir of our own, never /var/lib/cni.
func setupHostLocal(env *setupEnv, sub subnetPlan, name string) (*ipam, error) {
	network := "bench-" + name
	dataDir := filepath.Join(env.work, name)
	conf, err := conflistFor(name, "1.0.0", env, map[string]any{
		"type": "host-local", "dataDir": dataDir,
		"ranges": [][]map[string]string{{{"subnet": sub.Prefix.String(), "gateway": sub.Gateway.String(),
			"rangeStart": sub.First.String(), "rangeEnd": sub.Last.String()}}},
	})
	if err != nil {
		return nil, err
	}
	held := func(context.Context) (int, string, error) {
		// host-local keeps one file per allocated address, named after it, next to
		// its "lock" and "last_reserved_ip.0" files.
		dir := filepath.Join(dataDir, network)
		entries, err := os.ReadDir(dir)
		if os.IsNotExist(err) {
			return 0, "no data dir", nil
		}
		if err != nil {
			return 0, "", err
		}
		n := 0
		for _, e := range entries {
			if _, err := netip.ParseAddr(e.Name()); err == nil {
				n++
			}
		}
		return n, fmt.Sprintf("address files in %s", dir), nil
	}
	return &ipam{name: name, conflist: conf, held: held}, nil
}

var (
	whereaboutsPools = schema.GroupVersionKind{Group: "whereabouts.cni.cncf.io", Version: "v1alpha1", Kind: "IPPoolList"}
	whereaboutsORIPs = schema.GroupVersionKind{Group: "whereabouts.cni.cncf.io", Version: "v1alpha1", Kind: "OverlappingRangeIPReservationList"}
)

// setupWhereabouts uses whereabouts' defaults (leader election, overlapping-range
// reservations on) as users deploy it. Its mandatory flat config file is written to
// our temp dir and named by configuration_path, which whereabouts reads before the
// /etc/cni/net.d/whereabouts.d/whereabouts.conf default, so the host stays untouched.
func setupWhereabouts(_ context.Context, env *setupEnv, sub subnetPlan, name string) (*ipam, error) {
	flatPath := filepath.Join(env.work, "whereabouts.conf")
	flat, err := json.Marshal(map[string]any{
		"kubernetes": map[string]string{"kubeconfig": env.kubeconfig},
		"log_file":   filepath.Join(env.work, "whereabouts.log"),
		"log_level":  "error",
	})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(flatPath, flat, 0o600); err != nil {
		return nil, err
	}
	conf, err := conflistFor(name, "1.0.0", env, map[string]any{
		"type": "whereabouts", "range": sub.Prefix.String(),
		"range_start": sub.First.String(), "range_end": sub.Last.String(), "gateway": sub.Gateway.String(),
		"kubernetes":         map[string]string{"kubeconfig": env.kubeconfig},
		"configuration_path": flatPath,
		"log_file":           filepath.Join(env.work, "whereabouts.log"),
		"log_level":          "error",
	})
	if err != nil {
		return nil, err
	}
	held := func(ctx context.Context) (int, string, error) {
		// Pools live in the kubeconfig context's namespace (kube-system when it has
		// none); listing all namespaces counts them wherever they are.
		pools := &unstructured.UnstructuredList{}
		pools.SetGroupVersionKind(whereaboutsPools)
		if err := env.kube.List(ctx, pools); err != nil {
			return 0, "", err
		}
		n, mine := 0, 0
		for _, p := range pools.Items {
			// only this contestant's range: the delegate and IPAM-only runs share the CRDs
			if r, _, _ := unstructured.NestedString(p.Object, "spec", "range"); r != sub.Prefix.String() {
				continue
			}
			mine++
			allocs, _, err := unstructured.NestedMap(p.Object, "spec", "allocations")
			if err != nil {
				return 0, "", fmt.Errorf("whereabouts IPPool %s: %w", p.GetName(), err)
			}
			n += len(allocs)
		}
		orips := &unstructured.UnstructuredList{}
		orips.SetGroupVersionKind(whereaboutsORIPs)
		if err := env.kube.List(ctx, orips); err != nil {
			return 0, "", err
		}
		return n, fmt.Sprintf("allocations in %d whereabouts IPPools; %d OverlappingRangeIPReservations left", mine, len(orips.Items)), nil
	}
	return &ipam{name: name, conflist: conf, held: held}, nil
}
