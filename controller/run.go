package controller

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/go-logr/zapr"
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/controller/webhook"
)

// nadKindServed says whether the apiserver serves multus' NetworkAttachmentDefinition.
// Without it (multus not installed) the controller runs every other job, and
// UnderlayNetworks say what to install.
func nadKindServed(cfg *rest.Config) (bool, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false, err
	}
	list, err := dc.ServerResourcesForGroupVersion(nadv1.SchemeGroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("asking the apiserver whether it serves %s: %w", nadv1.SchemeGroupVersion, err)
	}
	for _, r := range list.APIResources {
		if r.Kind == "NetworkAttachmentDefinition" {
			return true, nil
		}
	}
	return false, nil
}

// generatedNADs selects the NADs UnderlayNetworks generated.
var generatedNADs = func() labels.Selector {
	req, err := labels.NewRequirement(v1.NetworkLabel, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant key: cannot fail
	}
	return labels.NewSelector().Add(*req)
}()

// What the controller may do; `make generate` turns these into deploy/rbac/controller: a
// ClusterRole for what is cluster-wide, and a Role in underpool-system for the two objects
// it keeps there (its lease, its CA Secret), by name. `create` cannot be limited to a name
// (the object has none before it exists), so it is granted apart, in that namespace only.
// The manifests must bind the Role too (RoleBinding underpool-controller).
// +kubebuilder:rbac:groups=underpool.io,resources=ippools;subnets;reservedips,verbs=get;list;watch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=underpool-system,resources=leases,resourceNames=underpool-controller,verbs=get;update;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=underpool-system,resources=leases,verbs=create
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Run serves the webhook and runs the controller's jobs until ctx ends.
func Run(ctx context.Context, cfg *rest.Config, opts Options, log *zap.Logger) error {
	ctrl.SetLogger(zapr.NewLogger(log))
	scheme, err := newScheme()
	if err != nil {
		return err
	}
	hook, err := webhook.New(ctx, cfg, opts.webhookOptions(), webhook.NewMetrics(opts.Registry), log)
	if err != nil {
		return err
	}
	nads, err := nadKindServed(cfg)
	if err != nil {
		return err
	}
	mgr, err := newManager(cfg, scheme, opts, hook.Server(), nads)
	if err != nil {
		return fmt.Errorf("creating the controller manager: %w", err)
	}
	s, err := newSetup(cfg, scheme, mgr, hook, opts, log)
	if err != nil {
		return err
	}
	s.nadKindMissing = !nads
	for _, job := range []func(*setup, context.Context) error{
		(*setup).webhook,            // IPPool, Subnet, ReservedIP validation; certificates; registration
		(*setup).poolFinalizer,      // no pool with live allocations goes
		(*setup).goneAllocations,    // PoolAllocations of pools that are gone
		(*setup).reservedInUse,      // ReservedIP status: which reserved addresses pods hold
		(*setup).subnetStatus,       // Subnet status: offered and held addresses
		(*setup).applicationPools,   // one pool per family for workloads that name a Subnet
		(*setup).networkAttachments, // the NADs UnderlayNetworks render into their namespaces
		(*setup).reservedReport,     // events and a series for ReservedIP entries that do not parse
		(*setup).overlapReport,      // events and a series for pools that share addresses
		(*setup).poolConditions,     // Exhausted, Overlapping, Invalid
		(*setup).orphanSweep,        // addresses allocated and held by no Endpoint
		(*setup).goneNodeRecycling,  // Endpoints of nodes no ipamd looks after
		(*setup).leaderFlag,         // underpool_controller_leader
		(*setup).leaderReadiness,    // only the leader is ready
	} {
		if err := job(s, ctx); err != nil {
			return err
		}
	}
	log.Info("controller starting", zap.String("webhook", net.JoinHostPort(opts.Webhook.Host, strconv.Itoa(opts.Webhook.Port))))
	return mgr.Start(ctx)
}

func newScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := nadv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return scheme, nil
}

// newManager makes the manager every job runs in: one leader among the replicas (when
// elected at all), the webhook's server, and caches slimmed (cacheSlimming; nads: multus'
// NAD kind is served).
func newManager(cfg *rest.Config, scheme *runtime.Scheme, opts Options, server ctrlwebhook.Server, nads bool) (manager.Manager, error) {
	metricsAddress := opts.MetricsAddress
	if metricsAddress == "" {
		metricsAddress = "0" // controller-runtime's "off"
	}
	return ctrl.NewManager(cfg, manager.Options{
		Scheme:                  scheme,
		Cache:                   cache.Options{ByObject: cacheSlimming(nads)},
		Metrics:                 metricsserver.Options{BindAddress: metricsAddress},
		HealthProbeBindAddress:  opts.HealthAddress,
		LeaderElection:          opts.LeaderElectionNamespace != "",
		LeaderElectionID:        "underpool-controller",
		LeaderElectionNamespace: opts.LeaderElectionNamespace,
		WebhookServer:           server,
	})
}

// cacheSlimming keeps of the objects the controller caches cluster-wide only what it
// reads: of every Node what recycling reads, of every workload what its application pool
// is carved from, of every pod's metadata what the pools of other kinds need, and of the
// NADs only those UnderlayNetworks generated (labelled): the cluster's other NADs are none
// of the controller's business, and one in a network's way is read from the API when a
// create meets it. The NADs only when their kind is served (nads): the manager refuses to
// start with a cache option for a kind nobody serves.
func cacheSlimming(nads bool) map[client.Object]cache.ByObject {
	slim := map[client.Object]cache.ByObject{&corev1.Node{}: {Transform: nodeTransform}, podMetadata(): {Transform: slimPod}}
	for _, k := range builtinKinds {
		slim[k.newObj()] = cache.ByObject{Transform: slimWorkload}
	}
	if nads {
		slim[&nadv1.NetworkAttachmentDefinition{}] = cache.ByObject{Label: generatedNADs}
	}
	return slim
}
