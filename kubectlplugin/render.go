package kubectlplugin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/nadgen"
)

func newRenderCommand(o *Options) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "render (NAME | -f FILE)",
		Short: "Print the NetworkAttachmentDefinitions an UnderlayNetwork generates",
		Long: `render prints, as YAML (or -o json), the NetworkAttachmentDefinition the controller writes
into each namespace an UnderlayNetwork names: the network from the cluster by NAME, or from a
manifest (-f FILE, - for stdin) before it is applied. A spec the webhook would refuse for its
own sake is refused here with the same words (the checks against other networks and pools
need the cluster and are the webhook's).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (file != "") {
				return fmt.Errorf("name a network in the cluster, or give its manifest with -f FILE: one of the two")
			}
			net, err := o.network(cmd.Context(), args, file)
			if err != nil {
				return err
			}
			return o.printRendered(net)
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "an UnderlayNetwork manifest (- reads stdin)")
	return cmd
}

// network reads the UnderlayNetwork to render: by name from the cluster, or from a file.
func (o *Options) network(ctx context.Context, args []string, file string) (*v1.UnderlayNetwork, error) {
	net := &v1.UnderlayNetwork{}
	if file == "" {
		c, err := o.Client()
		if err != nil {
			return nil, err
		}
		if err := c.Get(ctx, client.ObjectKey{Name: args[0]}, net); err != nil {
			return nil, fmt.Errorf("reading UnderlayNetwork %s: %w", args[0], err)
		}
		return net, nil
	}
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(o.Streams.In)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if err := yaml.UnmarshalStrict(data, net); err != nil {
		return nil, fmt.Errorf("%s is not an UnderlayNetwork manifest: %w", file, err)
	}
	if net.Kind != "UnderlayNetwork" || net.APIVersion != v1.GroupVersion.String() {
		return nil, fmt.Errorf("%s holds %s %s, not an UnderlayNetwork of %s", file, net.APIVersion, net.Kind, v1.GroupVersion)
	}
	if net.Name == "" {
		return nil, fmt.Errorf("%s: metadata.name is empty: the NADs are named after it", file)
	}
	return net, nil
}

// printRendered writes one NAD per target namespace, YAML documents or a JSON list.
func (o *Options) printRendered(net *v1.UnderlayNetwork) error {
	rendered, err := nadgen.Render(net)
	if err != nil {
		return fmt.Errorf("UnderlayNetwork %s: %w", net.Name, err)
	}
	nads := make([]any, 0, len(net.Spec.Namespaces))
	for _, ns := range net.Spec.Namespaces {
		nads = append(nads, rendered.NAD(net, ns))
	}
	if o.Output == "json" {
		data, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": nads}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(o.Streams.Out, string(data))
		return err
	}
	for i, nad := range nads {
		data, err := yaml.Marshal(nad)
		if err != nil {
			return err
		}
		if i > 0 {
			fmt.Fprintln(o.Streams.Out, "---")
		}
		if _, err := o.Streams.Out.Write(data); err != nil {
			return err
		}
	}
	return nil
}
