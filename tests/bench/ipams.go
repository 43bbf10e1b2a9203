package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/bits"
	"net/netip"
	"os"
	"path/filepath"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
)

// subnetPlan is one IPAM's private range.
type subnetPlan struct {
	Prefix  netip.Prefix
	Gateway netip.Addr // first host address; host-local and underpool never hand it out
}

// planSubnets gives each IPAM its own block of 10.250.0.0/16 (the range the project's
// tests own), sized from the larger of --pods and --density: /24s at 10.250.200-202 for up to ~120 pods, larger
// aligned blocks beyond. A block holds twice the pods plus network, broadcast and
// gateway, so a run that leaked every address still leaves the next run room to show
// it as a leak rather than as a cascade of "pool exhausted" failures.
func planSubnets(pods int) (map[string]subnetPlan, error) {
	need := 2*pods + 3
	prefixLen := min(24, 32-bits.Len(uint(need-1))) // smallest block with >= need addresses
	span := 1 << (24 - prefixLen)                   // block size in units of /24 (third octet)
	// Near .200 (clear of the e2e tests' low /24s) when three blocks fit there,
	// otherwise as high as possible.
	start := (200 + span - 1) / span * span
	n := len(allIPAMs)
	if start+n*span > 256 {
		start = (256 - n*span) / span * span
	}
	if start < 0 {
		return nil, fmt.Errorf("%d pods need %d /%d blocks, more than 10.250.0.0/16 holds", pods, n, prefixLen)
	}
	plans := map[string]subnetPlan{}
	for i, name := range allIPAMs {
		addr := netip.AddrFrom4([4]byte{10, 250, byte(start + i*span), 0})
		p := netip.PrefixFrom(addr, prefixLen)
		plans[name] = subnetPlan{Prefix: p, Gateway: addr.Next()}
	}
	return plans, nil
}

// setupEnv is what every IPAM setup may use.
type setupEnv struct {
	work        string        // the run's temp dir
	kube        client.Client // admin client of the local apiserver
	kubeconfig  string        // same identity, for whereabouts
	master      string        // macvlan parent in the root netns
	ipamdSocket string        // set when underpool runs
}

// ipam is one contestant: its conflist and a way to count what it still holds.
type ipam struct {
	name     string
	conflist []byte
	// held counts the addresses the IPAM still considers allocated, read from its
	// own bookkeeping (not from ours), plus a human-readable detail.
	held func(ctx context.Context) (int, string, error)
}

func setup(ctx context.Context, name string, env *setupEnv, sub subnetPlan) (*ipam, error) {
	switch name {
	case ipamUnderpool:
		return setupUnderpool(ctx, env, sub, name, true)
	case ipamUnderpoolNoChecks:
		return setupUnderpool(ctx, env, sub, name, false)
	case ipamHostLocal:
		return setupHostLocal(env, sub)
	case ipamWhereabouts:
		return setupWhereabouts(ctx, env, sub)
	}
	return nil, fmt.Errorf("unknown IPAM %q", name)
}

// setupUnderpool creates the IPPool ipamd allocates from. Pods are "in" namespace
// default (it exists; ipamd records Endpoints there). checks false turns the underlay
// checks off (IP conflict probe and gratuitous ARP), so their cost shows side by side.
func setupUnderpool(ctx context.Context, env *setupEnv, sub subnetPlan, name string, checks bool) (*ipam, error) {
	pool := "bench-" + name
	obj := &v1.IPPool{
		ObjectMeta: metav1.ObjectMeta{Name: pool},
		Spec:       v1.IPPoolSpec{Subnet: sub.Prefix.String(), Gateway: sub.Gateway.String()},
	}
	if err := env.kube.Create(ctx, obj); err != nil {
		return nil, fmt.Errorf("create IPPool %s: %w", pool, err)
	}
	conf, err := json.Marshal(map[string]any{
		"cniVersion": "1.1.0", "name": "bench-" + name,
		"plugins": []any{map[string]any{
			"type":     "underpool",
			"delegate": map[string]any{"type": "macvlan", "master": env.master, "mode": "bridge"},
			"ipam":     map[string]any{"socket": env.ipamdSocket, "ipv4Pools": []string{pool}},
			"checks":   map[string]any{"ipConflict": checks, "announce": checks},
			// the bench's pods live beside the machine's root netns, which must not get
			// host veths and routes; the tests measure host connectivity in a node netns
			"hostConnectivity": map[string]any{"enabled": false},
			"logFile":          filepath.Join(env.work, "underpool.log"),
			"logLevel":         "error",
		}},
	})
	if err != nil {
		return nil, err
	}
	held := func(ctx context.Context) (int, string, error) {
		p := &v1.IPPool{}
		if err := env.kube.Get(ctx, client.ObjectKey{Name: pool}, p); err != nil {
			return 0, "", err
		}
		// Endpoints record who holds an address; one left over is a leak as well.
		var eps v1.EndpointList
		if err := env.kube.List(ctx, &eps, client.InNamespace(metav1.NamespaceDefault)); err != nil {
			return 0, "", err
		}
		return int(p.Status.AllocatedIPCount), fmt.Sprintf("IPPool %s status.allocatedIPCount; %d Endpoint objects left", pool, len(eps.Items)), nil
	}
	return &ipam{name: name, conflist: conf, held: held}, nil
}

// setupHostLocal points host-local at a data dir of our own, never /var/lib/cni.
func setupHostLocal(env *setupEnv, sub subnetPlan) (*ipam, error) {
	const network = "bench-hostlocal"
	dataDir := filepath.Join(env.work, "host-local")
	conf, err := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": network,
		"plugins": []any{map[string]any{
			"type": "macvlan", "master": env.master, "mode": "bridge",
			"ipam": map[string]any{
				"type": "host-local", "dataDir": dataDir,
				"ranges": [][]map[string]string{{{"subnet": sub.Prefix.String()}}},
			},
		}},
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
	return &ipam{name: ipamHostLocal, conflist: conf, held: held}, nil
}

var (
	whereaboutsPools = schema.GroupVersionKind{Group: "whereabouts.cni.cncf.io", Version: "v1alpha1", Kind: "IPPoolList"}
	whereaboutsORIPs = schema.GroupVersionKind{Group: "whereabouts.cni.cncf.io", Version: "v1alpha1", Kind: "OverlappingRangeIPReservationList"}
)

// setupWhereabouts uses whereabouts' defaults (leader election, overlapping-range
// reservations on) as users deploy it. Its mandatory flat config file is written to
// our temp dir and named by configuration_path, which whereabouts reads before the
// /etc/cni/net.d/whereabouts.d/whereabouts.conf default, so the host stays untouched.
func setupWhereabouts(_ context.Context, env *setupEnv, sub subnetPlan) (*ipam, error) {
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
	conf, err := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": "bench-whereabouts",
		"plugins": []any{map[string]any{
			"type": "macvlan", "master": env.master, "mode": "bridge",
			"ipam": map[string]any{
				"type": "whereabouts", "range": sub.Prefix.String(),
				"kubernetes":         map[string]string{"kubeconfig": env.kubeconfig},
				"configuration_path": flatPath,
				"log_file":           filepath.Join(env.work, "whereabouts.log"),
				"log_level":          "error",
			},
		}},
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
		n := 0
		for _, p := range pools.Items {
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
		return n, fmt.Sprintf("allocations in %d whereabouts IPPools; %d OverlappingRangeIPReservations left", len(pools.Items), len(orips.Items)), nil
	}
	return &ipam{name: ipamWhereabouts, conflist: conf, held: held}, nil
}
