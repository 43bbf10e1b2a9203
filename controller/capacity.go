package controller

import (
	"context"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

const poolAllocatedHelp = "Addresses of the IPPool allocated now (all of them while its PoolAllocation's state.allocated is corrupt: it hands none out)."

var (
	poolTotalDesc = prometheus.NewDesc("underpool_ippool_total_addresses",
		"Addresses the IPPool can hand out (its usable range less exclusions and the gateway).", []string{"pool"}, nil)
	poolAllocatedDesc   = prometheus.NewDesc("underpool_ippool_allocated_addresses", poolAllocatedHelp, []string{"pool"}, nil)
	poolQuarantinedDesc = prometheus.NewDesc("underpool_ippool_quarantined_addresses",
		"Addresses of the IPPool kept out of allocation because another host answered for them.", []string{"pool"}, nil)
	subnetTotalDesc = prometheus.NewDesc("underpool_subnet_total_addresses",
		"Addresses the Subnet offers.", []string{"subnet"}, nil)
	subnetAllocatedDesc = prometheus.NewDesc("underpool_subnet_allocated_addresses",
		"Addresses allocated in the IPPools inside the Subnet.", []string{"subnet"}, nil)
	subnetQuarantinedDesc = prometheus.NewDesc("underpool_subnet_quarantined_addresses",
		"Addresses quarantined in the IPPools inside the Subnet.", []string{"subnet"}, nil)
)

// capacity reports per-pool and per-Subnet capacity from the informer cache at scrape
// time (the pools and their PoolAllocations), so a deleted pool's series go with it; with
// no reader (nil) it has no series.
type capacity struct {
	c client.Reader
}

func (c *capacity) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolTotalDesc, poolAllocatedDesc, poolQuarantinedDesc, subnetTotalDesc, subnetAllocatedDesc, subnetQuarantinedDesc} {
		ch <- d
	}
}

func (c *capacity) Collect(ch chan<- prometheus.Metric) {
	if c.c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var pools v1.IPPoolList
	if err := c.c.List(ctx, &pools); err != nil {
		return
	}
	states, err := readStates(ctx, c.c, pools.Items)
	if err != nil {
		return
	}
	now := time.Now()
	type count struct{ total, allocated, quarantined int64 }
	byPool := make([]count, len(pools.Items))
	prefixes := make([]netip.Prefix, len(pools.Items))
	for i := range pools.Items {
		p := &pools.Items[i]
		state := states[p.Name]
		n := count{total: state.TotalIPCount, allocated: heldCount(p, &state)}
		if view, err := allocator.NewPool(p.Name, &p.Spec); err == nil {
			n.total, prefixes[i] = view.TotalCount(), view.Prefix
		}
		for _, q := range state.Quarantined {
			if q.Until.After(now) {
				n.quarantined++
			}
		}
		byPool[i] = n
		ch <- prometheus.MustNewConstMetric(poolTotalDesc, prometheus.GaugeValue, float64(n.total), p.Name)
		ch <- prometheus.MustNewConstMetric(poolAllocatedDesc, prometheus.GaugeValue, float64(n.allocated), p.Name)
		ch <- prometheus.MustNewConstMetric(poolQuarantinedDesc, prometheus.GaugeValue, float64(n.quarantined), p.Name)
	}
	var subnets v1.SubnetList
	if err := c.c.List(ctx, &subnets); err != nil {
		return
	}
	for _, s := range subnets.Items {
		space, err := allocator.NewPool(s.Name, &v1.IPPoolSpec{Subnet: s.Spec.Subnet, IPs: s.Spec.IPs,
			ExcludeIPs: s.Spec.ExcludeIPs, Gateway: s.Spec.Gateway})
		if err != nil {
			continue
		}
		var n count
		n.total = space.TotalCount()
		for i := range pools.Items {
			if prefixes[i].IsValid() && within(prefixes[i].Masked(), space.Prefix) {
				n.allocated += byPool[i].allocated
				n.quarantined += byPool[i].quarantined
			}
		}
		ch <- prometheus.MustNewConstMetric(subnetTotalDesc, prometheus.GaugeValue, float64(n.total), s.Name)
		ch <- prometheus.MustNewConstMetric(subnetAllocatedDesc, prometheus.GaugeValue, float64(n.allocated), s.Name)
		ch <- prometheus.MustNewConstMetric(subnetQuarantinedDesc, prometheus.GaugeValue, float64(n.quarantined), s.Name)
	}
}
