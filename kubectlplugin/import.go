package kubectlplugin

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/underpool/underpool/kubectlplugin/importer"
)

// `import` is the one subcommand that writes; the importer package reads the peer's
// objects, plans and writes. This file holds its flags and its table.

func newImportCommand(o *Options) *cobra.Command {
	opts := importer.Options{}
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
		ValidArgs: importer.Sources,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.checkOutput(); err != nil {
				return err
			}
			c, err := o.Client()
			if err != nil {
				return err
			}
			opts.Source = args[0]
			rep, err := importer.Run(cmd.Context(), c, opts)
			if err != nil {
				return err
			}
			return o.print(rep, func(w io.Writer) { importTable(w, rep) })
		},
	}
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print what would be created; write nothing")
	cmd.Flags().StringVar(&opts.Prefix, "prefix", "", "prefix for the names of the created Subnets, IPPools and ReservedIPs")
	return cmd
}

func importTable(w io.Writer, rep *importer.Report) {
	sign := map[string]string{importer.ActionCreate: "+", importer.ActionUnchanged: "=", importer.ActionMark: "~"}
	verb := "created"
	if rep.DryRun {
		verb = "would create"
	}
	fmt.Fprintln(w, " \tKIND\tNAME\tFROM\tDETAIL")
	n := 0
	for _, ch := range rep.Changes {
		if ch.Action == importer.ActionCreate {
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
