package chain

import (
	"fmt"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/underpool/underpool/chain/ipamplugin"
	"github.com/underpool/underpool/netplan"
	"github.com/underpool/underpool/underlay"
)

// podAllocation is what the pod's interface gets: ipamd's allocation with the network's
// own routes under its routes (netplan.Allocation.WithNetworkRoutes says which wins).
func (c *NetConf) podAllocation(alloc netplan.Allocation) (netplan.Allocation, error) {
	return alloc.WithNetworkRoutes(c.routes)
}

// configureRoutes runs in the pod netns once the addresses are up: it decides which
// family's default route this interface holds, installs the main-table routes, the
// interface's own table and its rules, loosens rp_filter, and returns the routes for the
// CNI result and whether the interface is the pod's way out: it holds the default route
// of every family it has an address of (see primary).
func configureRoutes(conf *NetConf, ifName string, alloc netplan.Allocation) ([]*types.Route, bool, error) {
	intent := alloc.Intent(ifName, conf.Routing.table(ifName))
	isPrimary := true
	for _, is4 := range []bool{true, false} {
		exists, err := underlay.DefaultRouteExists(is4)
		if err != nil {
			return nil, false, fmt.Errorf("reading the pod's default routes: %w", err)
		}
		// a family this interface has no address of is not one it can hold the default of:
		// an IPv4-only NIC next to an overlay eth0 with no IPv6 default route holds nothing
		has := alloc.HasFamily(is4)
		holds := has && holdsDefault(ifName, alloc.DefaultRouteHolder(conf.Routing.DefaultRouteInterface), conf.WantDefaultRoute(), exists)
		isPrimary = isPrimary && primary(has, holds)
		if is4 {
			intent.Default4 = holds
		} else {
			intent.Default6 = holds
		}
	}
	plan, err := netplan.Build(intent)
	if err != nil {
		return nil, false, err
	}
	if err := tableFree(intent.Table, ifName); err != nil {
		return nil, false, err
	}
	if err := underlay.Apply(ifName, plan); err != nil {
		return nil, false, err
	}
	if intent.Table != 0 {
		if err := underlay.SetRPFilter(ifName, conf.Routing.rpFilter()); err != nil {
			return nil, false, err
		}
	}
	return ipamplugin.Routes(plan.Routes), isPrimary && (intent.Default4 || intent.Default6), nil
}

// primary is one family's part of "the pod's way out": the interface holds that family's
// default route, or has no address of it. A dual-stack NIC next to an IPv4-only overlay
// eth0 takes the IPv6 default (eth0 has none) but is not the way out: eth0 keeps the IPv4
// default and reaches the node, and a host veth (host connectivity's automatic rule asks
// for the way out) would route the node's IPv4 addresses away from eth0, replies to the
// kubelet's probes of eth0's address included.
func primary(has, holds bool) bool { return !has || holds }

// tableFree refuses a table another interface of the pod already routes through: two
// interface names whose hashes meet (netplan.TableFor) must not share one, or DEL of
// one would take the other's routes. The interface's own host veth shares it by design.
func tableFree(table int, ifName string) error {
	if table == 0 {
		return nil
	}
	users, err := underlay.TableLinks(table)
	if err != nil {
		return fmt.Errorf("listing routing table %d: %w", table, err)
	}
	for _, u := range users {
		if u != ifName && u != podVethName(ifName) {
			return fmt.Errorf("routing table %d of %s is already %s's (their names number alike): rename one interface, or give one network another routing.tableBase", table, ifName, u)
		}
	}
	return nil
}

// holdsDefault is the documented default-route rule: defaultRoute false never takes it;
// the pod's default-route-nic annotation, else routing.defaultRouteInterface, when set,
// names the one interface that does (configured); otherwise
// the first interface attached takes it and later ones (and underlay NICs next to an
// overlay eth0 that already has one) leave it alone.
func holdsDefault(ifName, configured string, allowed, exists bool) bool {
	switch {
	case !allowed:
		return false
	case configured != "":
		return configured == ifName
	default:
		return !exists
	}
}

// addAddresses puts the addresses on the interface, without routes (those depend on
// the default-route decision). IPv6 addresses start tentative: awaitIPv6 waits for them.
func addAddresses(ifName string, addrs []netplan.Address) error {
	prefixes := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		prefixes = append(prefixes, a.Prefix)
	}
	return underlay.AddAddresses(ifName, prefixes)
}
