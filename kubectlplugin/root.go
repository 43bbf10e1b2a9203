// Package kubectlplugin is `kubectl underpool`: read-only views of what ipamd holds and
// would do now, computed from the objects ipamd itself reads with the pure core ipamd
// decides with (core/selection, core/allocator, core/recycle). It owns:
//   - the command tree, the kubeconfig client and scheme (root.go), -o table|json|yaml
//     (output.go);
//   - explain pod: the pool selection chain for a pod, what it holds, why it has no
//     address (explain*.go);
//   - pools: each pool's capacity as the allocator sees it (pools.go, capacity.go, which
//     keeps a small read-only copy of ipamd's overlap rule);
//   - who: which attachment holds an address (who.go);
//   - gc --dry-run: what recycling and the orphan sweep would free, and why (gc.go, and
//     verdict.go, the words around recycle.Judge);
//   - render: the NADs an UnderlayNetwork generates, core/nadgen's rendering as the
//     controller writes it (render.go);
//   - import: the one command that writes, its flags and table (import.go); the reading,
//     planning and writing are package kubectlplugin/importer.
//
// It imports of underpool only api/v1, core/..., internal/buildinfo and its importer,
// never ipamd or the controller (internal/layering, `make check-deps`).
package kubectlplugin

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/internal/buildinfo"
)

// Main runs the plugin on the process' arguments and returns the exit code.
func Main() int {
	cmd := NewCommand(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	if err := cmd.Execute(); err != nil {
		return 1
	}
	return 0
}

// Options are the flags every subcommand shares.
type Options struct {
	Flags   *genericclioptions.ConfigFlags
	Streams genericiooptions.IOStreams
	Output  string

	client client.Client // built on first use; tests may set it
}

// NewCommand builds `kubectl underpool` and its subcommands.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{Flags: genericclioptions.NewConfigFlags(true), Streams: streams}
	cmd := &cobra.Command{
		Use: "kubectl-underpool",
		// the same "<binary> <version>" line every underpool binary prints
		Version: buildinfo.Get(),
		Short:   "Explain underpool's address decisions, pool capacity and what GC would free",
		Long: `kubectl underpool reads the objects ipamd reads (IPPools and their PoolAllocations, Endpoints, pods,
namespaces, nodes, NetworkAttachmentDefinitions, ReservedIPs) and explains, without changing anything:

  explain pod NS/NAME   the pool selection chain for a pod, what it holds, why it has no address
  pools                 capacity of every IPPool
  who IP                which pod holds an address
  gc --dry-run          what recycling and the orphan sweep would free now, and why
  render NAME|-f FILE   the NetworkAttachmentDefinitions an UnderlayNetwork generates

and, the one command that writes:

  import spiderpool|whereabouts [--dry-run]
                        underpool pools, reserved IPs and Endpoints that keep every live
                        pod's address, from another IPAM's objects (left as they are)`,
		SilenceUsage: true,
		// kubectl runs the binary kubectl-underpool as `kubectl underpool`: help says so
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl underpool"},
	}
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	cmd.SetVersionTemplate(buildinfo.String("kubectl-underpool") + "\n")
	o.Flags.AddFlags(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVarP(&o.Output, "output", "o", "", "output format: table (default), json or yaml")
	cmd.AddCommand(newExplainCommand(o), newPoolsCommand(o), newWhoCommand(o), newGCCommand(o), newRenderCommand(o), newImportCommand(o))
	return cmd
}

// Scheme knows every kind the plugin reads.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1.AddToScheme, nadv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Client returns the API client built from the kubeconfig flags.
func (o *Options) Client() (client.Client, error) {
	if o.client != nil {
		return o.client, nil
	}
	cfg, err := o.Flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w: pass --kubeconfig or set KUBECONFIG", err)
	}
	s, err := Scheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w: check --kubeconfig and --context", cfg.Host, err)
	}
	o.client = c
	return c, nil
}

// namespace returns the -n flag, else the kubeconfig context's namespace, else "default".
func (o *Options) namespace() string {
	ns, _, err := o.Flags.ToRawKubeConfigLoader().Namespace()
	if err != nil || ns == "" {
		return "default"
	}
	return ns
}

// splitName reads "NS/NAME" or "NAME" (then -n applies).
func (o *Options) splitName(arg string) (string, string, error) {
	ns, name, found := strings.Cut(arg, "/")
	if !found {
		return o.namespace(), arg, nil
	}
	if ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("%q is not NAMESPACE/NAME or NAME: write e.g. default/my-pod", arg)
	}
	return ns, name, nil
}
