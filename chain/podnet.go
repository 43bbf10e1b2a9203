package chain

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/netlinksafe"

	"github.com/underpool/underpool/ipamd/rpc"
	"github.com/underpool/underpool/routes"
)

// configureRoutes runs in the pod netns once the addresses are up: it decides which
// family's default route this interface holds, installs the main-table routes, the
// interface's own table and its rules, loosens rp_filter, and returns the routes for the
// CNI result and whether the interface holds a default route.
func configureRoutes(conf *NetConf, ifName string, intent routes.Intent) ([]*types.Route, bool, error) {
	for _, is4 := range []bool{true, false} {
		exists, err := routes.DefaultRouteExists(is4)
		if err != nil {
			return nil, false, fmt.Errorf("reading the pod's default routes: %w", err)
		}
		holds := holdsDefault(ifName, conf.Routing.DefaultRouteInterface, conf.wantDefaultRoute(), exists)
		if is4 {
			intent.Default4 = holds
		} else {
			intent.Default6 = holds
		}
	}
	plan, err := routes.Build(intent)
	if err != nil {
		return nil, false, err
	}
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return nil, false, err
	}
	if err := routes.Apply(link, plan); err != nil {
		return nil, false, err
	}
	if intent.Table != 0 {
		if err := routes.SetRPFilter(ifName, conf.Routing.rpFilter()); err != nil {
			return nil, false, err
		}
	}
	return cniRoutes(plan), intent.Default4 || intent.Default6, nil
}

// holdsDefault is the documented default-route rule: defaultRoute false never takes it;
// routing.defaultRouteInterface, when set, names the one interface that does; otherwise
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

// routingIntent gathers what ipamd said about the interface into a routes.Intent.
func routingIntent(conf *NetConf, ifName string, alloc *rpc.AllocateResponse) (routes.Intent, error) {
	in := routes.Intent{IfName: ifName}
	if conf.Routing.policyRouting() {
		in.Table = routes.TableFor(ifName, conf.Routing.TableBase)
	}
	for _, c := range alloc.IPs {
		p, err := netip.ParsePrefix(c.Address)
		if err != nil {
			return in, fmt.Errorf("ipamd returned a bad address %q: %v", c.Address, err)
		}
		a := routes.Address{Prefix: p}
		if c.Gateway != "" {
			if a.Gateway, err = netip.ParseAddr(c.Gateway); err != nil {
				return in, fmt.Errorf("ipamd returned a bad gateway %q for pool %s: %v", c.Gateway, c.Pool, err)
			}
		}
		in.Addresses = append(in.Addresses, a)
	}
	for i, r := range alloc.Routes {
		route, err := routes.Parse(r.Dst, r.Gw, fmt.Sprintf("ipamd route %d", i))
		if err != nil {
			return in, err
		}
		in.Routes = append(in.Routes, route)
	}
	return in, nil
}

// addAddresses puts the addresses on the interface and brings it up, without routes
// (those depend on the default-route decision), then waits out IPv6 duplicate address
// detection so the pod never starts with a tentative address.
func addAddresses(ifName string, result *current.Result) error {
	addrOnly := *result
	addrOnly.Routes = nil
	if err := ipam.ConfigureIface(ifName, &addrOnly); err != nil {
		return err
	}
	for _, c := range result.IPs {
		if c.Address.IP.To4() == nil {
			return ip.SettleAddresses(ifName, settleTimeout)
		}
	}
	// IPv4 only: nothing to settle; waiting would only wait out the link-local
	// address's DAD (about 1.5 s) for an address the pod does not use
	return nil
}

func cniRoutes(p routes.Plan) []*types.Route {
	out := make([]*types.Route, 0, len(p.Routes))
	for _, e := range p.Routes {
		r := &types.Route{Dst: net.IPNet{IP: e.Dst.Addr().AsSlice(), Mask: net.CIDRMask(e.Dst.Bits(), e.Dst.Addr().BitLen())}}
		if e.Gw.IsValid() {
			r.GW = e.Gw.AsSlice()
		}
		if e.Table != 0 {
			table := e.Table
			r.Table = &table
		}
		out = append(out, r)
	}
	return out
}

// planFromResult rebuilds what ADD installed from its result, for CHECK.
func planFromResult(conf *NetConf, ifName string, prev *current.Result) routes.Plan {
	var p routes.Plan
	for _, r := range prev.Routes {
		dst, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		e := routes.Entry{Dst: netip.PrefixFrom(dst.Unmap(), ones)}
		if gw, ok := netip.AddrFromSlice(r.GW); ok {
			e.Gw = gw.Unmap()
		}
		if r.Table != nil {
			e.Table = *r.Table
		}
		p.Routes = append(p.Routes, e)
	}
	if !conf.Routing.policyRouting() {
		return p
	}
	table := routes.TableFor(ifName, conf.Routing.TableBase)
	for _, c := range prev.IPs {
		if c.Interface == nil || *c.Interface >= len(prev.Interfaces) || prev.Interfaces[*c.Interface].Name != ifName {
			continue
		}
		a, ok := netip.AddrFromSlice(c.Address.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		p.Rules = append(p.Rules, routes.Rule{Src: netip.PrefixFrom(a, a.BitLen()), Table: table})
	}
	return p
}
