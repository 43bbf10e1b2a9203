package kubectlplugin

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// PoolsReport is the output of `pools`.
type PoolsReport struct {
	Pools []*Capacity `json:"pools"`
}

func newPoolsCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "pools",
		Short: "Capacity of every IPPool: total, allocated, quarantined, free, % used",
		Long: `Capacity of every IPPool as ipamd's allocator sees it now.

FREE is what an allocation could still get: the usable addresses (spec.ips minus
excludeIPs, the gateway, network and broadcast) minus the allocated, the quarantined
(found in use on the wire), the reserved (ReservedIP objects) and those another pool also
covers (handed out by neither). OWNER is the workload an application pool was carved for.`,
		Example: "  kubectl underpool pools\n  kubectl underpool pools -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.checkOutput(); err != nil {
				return err
			}
			c, err := o.Client()
			if err != nil {
				return err
			}
			pools, err := loadPools(cmd.Context(), c, time.Now())
			if err != nil {
				return err
			}
			report := PoolsReport{Pools: pools.order}
			if report.Pools == nil {
				report.Pools = []*Capacity{}
			}
			return o.print(report, func(w io.Writer) { poolsTable(w, report.Pools) })
		},
	}
}

func poolsTable(w io.Writer, pools []*Capacity) {
	if len(pools) == 0 {
		fmt.Fprintln(w, "No IPPools found: create one (see conflist-examples/) or check --context.")
		return
	}
	row(w, "NAME", "SUBNET", "TOTAL", "ALLOCATED", "QUARANTINED", "FREE", "USED", "DEFAULT", "OWNER", "NOTE")
	for _, p := range pools {
		note := p.Problem
		switch {
		case note != "":
		case p.Deleting:
			note = "being deleted: hands out nothing more"
		case p.Free == 0 && p.Total > 0:
			note = "exhausted"
		}
		notes := []string{}
		if note != "" {
			notes = append(notes, note)
		}
		if p.Reserved > 0 {
			notes = append(notes, fmt.Sprintf("%d reserved (ReservedIP)", p.Reserved))
		}
		if p.Shared > 0 {
			notes = append(notes, fmt.Sprintf("%d shared with other pools (handed out by neither)", p.Shared))
		}
		note = strings.Join(notes, "; ")
		row(w, p.Name, p.Subnet, count(p.Total), count(p.Allocated), count(p.Quarantined), count(p.Free),
			strconv.FormatFloat(p.UsedPercent, 'f', 1, 64)+"%", strconv.FormatBool(p.Default), p.AppPoolOwner, note)
	}
}

// count keeps an IPv6 /64's 2^64 readable.
func count(n uint64) string {
	if n >= 1<<40 {
		return fmt.Sprintf("%.3g", float64(n))
	}
	return strconv.FormatUint(n, 10)
}
