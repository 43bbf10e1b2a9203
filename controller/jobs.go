package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/controller/orphans"
	"github.com/underpool/underpool/controller/webhook"
	"github.com/underpool/underpool/core/apppool"
	"github.com/underpool/underpool/ipamd/store"
)

// setup is what the jobs are wired from: the manager, and what several jobs share.
type setup struct {
	mgr  manager.Manager
	hook *webhook.Webhook
	api  client.Reader // uncached reads
	// timed writes carry the commit window's timeout to the apiserver (the orphan
	// sweeper's and the recycler's: the release protocol bounds them)
	timed   client.Client
	events  events.EventRecorder
	metrics *Metrics
	opts    Options
	log     *zap.Logger
	// nadKindMissing: multus' NAD CRD was not served at start (run.go)
	nadKindMissing bool
}

func newSetup(cfg *rest.Config, scheme *runtime.Scheme, mgr manager.Manager, hook *webhook.Webhook, opts Options, log *zap.Logger) (*setup, error) {
	timed, err := client.New(opts.CommitWindow.WriterConfig(cfg), client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	return &setup{mgr: mgr, hook: hook, api: mgr.GetAPIReader(), timed: timed, events: mgr.GetEventRecorder("underpool-controller"),
		metrics: NewMetrics(opts.Registry, mgr.GetCache()), opts: opts, log: log}, nil
}

func (s *setup) webhook(context.Context) error { return s.hook.SetupWithManager(s.mgr) }

// poolFinalizer keeps PoolProtection on pools; a deleted pool is looked at again when its
// PoolAllocation changes (its last address freed).
func (s *setup) poolFinalizer(context.Context) error {
	return builder.ControllerManagedBy(s.mgr).Named("pool-protection").For(&v1.IPPool{}).
		Watches(&v1.PoolAllocation{}, sameName()).
		Complete(&poolFinalizer{c: s.mgr.GetClient(), api: s.api})
}

// goneAllocations deletes the PoolAllocations of pools that are gone, a commit window
// after they were seen so.
func (s *setup) goneAllocations(context.Context) error {
	return builder.ControllerManagedBy(s.mgr).Named("gone-pool-allocations").For(&v1.PoolAllocation{}).
		Watches(&v1.IPPool{}, sameName(), builder.WithPredicates(poolDeletes)).
		Complete(&goneAllocations{c: s.mgr.GetClient(), api: s.api, window: s.opts.CommitWindow.Spacing(), log: s.log.Named("gone-pool-allocations")})
}

func (s *setup) reservedInUse(ctx context.Context) error {
	if err := s.mgr.GetFieldIndexer().IndexField(ctx, &v1.Endpoint{}, indexEndpointAddress, endpointAddressIndex); err != nil {
		return fmt.Errorf("indexing Endpoints by address: %w", err)
	}
	return builder.ControllerManagedBy(s.mgr).Named("reserved-in-use").For(&v1.ReservedIP{}).
		Watches(&v1.Endpoint{}, reservationsHolding(s.mgr.GetClient())).Complete(&reservedInUse{c: s.mgr.GetClient()})
}

func (s *setup) subnetStatus(context.Context) error {
	allSubnets := enqueueAll(s.mgr.GetClient(), func() client.ObjectList { return &v1.SubnetList{} })
	return builder.ControllerManagedBy(s.mgr).Named("subnet-status").For(&v1.Subnet{}).
		Watches(&v1.IPPool{}, allSubnets).Complete(&subnetStatus{c: s.mgr.GetClient()})
}

// applicationPools runs one reconciler per built-in workload kind and one for every
// other kind; they carve one at a time.
func (s *setup) applicationPools(ctx context.Context) error {
	carving := &sync.Mutex{}
	for _, kind := range []string{apppool.KindDeployment, apppool.KindStatefulSet, apppool.KindDaemonSet,
		apppool.KindReplicaSet, apppool.KindJob, apppool.KindCronJob} {
		k := builtinKinds[kind]
		if err := builder.ControllerManagedBy(s.mgr).Named("app-pools-"+strings.ToLower(kind)+"s").
			For(k.newObj(), builder.WithPredicates(sizeOrTemplateChanged(k))).
			Watches(&v1.IPPool{}, enqueueOwner(kind), builder.WithPredicates(poolDeletes)).
			Complete(s.appPools(kind, carving, nil)); err != nil {
			return err
		}
	}
	return s.otherKindsPools(ctx, carving)
}

// otherKindsPools runs the reconciler of workloads of any kind not built in, learnt of
// from their pods (appothers.go).
func (s *setup) otherKindsPools(ctx context.Context, carving *sync.Mutex) error {
	if err := s.mgr.GetFieldIndexer().IndexField(ctx, podMetadata(), indexPodWorkload, podWorkloadIndex); err != nil {
		return fmt.Errorf("indexing pods by their workload: %w", err)
	}
	for _, kind := range []string{apppool.KindReplicaSet, apppool.KindJob} {
		if err := s.mgr.GetFieldIndexer().IndexField(ctx, builtinKinds[kind].newObj(), indexAboveWorkload, aboveWorkloadIndex); err != nil {
			return fmt.Errorf("indexing %ss by the workload above them: %w", kind, err)
		}
	}
	disco, err := discovery.NewDiscoveryClientForConfig(s.mgr.GetConfig())
	if err != nil {
		return err
	}
	others := &otherKinds{cache: s.mgr.GetCache(), scale: &apiScales{c: s.mgr.GetClient(), mapper: s.mgr.GetRESTMapper(), discovery: disco}}
	return builder.ControllerManagedBy(s.mgr).Named("app-pools-other-kinds").
		WatchesMetadata(&corev1.Pod{}, enqueueOtherKind(), builder.WithPredicates(podsComeAndGo)).
		Watches(builtinKinds[apppool.KindReplicaSet].newObj(), enqueueOtherKindAbove(),
			builder.WithPredicates(sizeOrTemplateChanged(builtinKinds[apppool.KindReplicaSet]))).
		Watches(builtinKinds[apppool.KindJob].newObj(), enqueueOtherKindAbove(),
			builder.WithPredicates(sizeOrTemplateChanged(builtinKinds[apppool.KindJob]))).
		Watches(&v1.IPPool{}, enqueueOwner(""), builder.WithPredicates(poolsOfOtherKinds)).
		Complete(s.appPools("", carving, others))
}

func (s *setup) appPools(kind string, carving *sync.Mutex, others *otherKinds) *appPools {
	return &appPools{c: s.mgr.GetClient(), api: s.api, kind: kind, others: others, events: s.events, carving: carving, changes: s.metrics.appPoolChanges}
}

// networkAttachments generates the NADs of UnderlayNetworks. Without the NAD CRD (multus
// not installed) it cannot watch them: the networks say so in their status instead of
// the whole controller failing to start.
func (s *setup) networkAttachments(context.Context) error {
	r := &networkNADs{c: s.mgr.GetClient(), api: s.api, events: s.events, log: s.log.Named("networks"), kindMissing: s.nadKindMissing}
	b := builder.ControllerManagedBy(s.mgr).Named("underlay-networks").
		For(&v1.UnderlayNetwork{}, builder.WithPredicates(predicate.GenerationChangedPredicate{}))
	if s.nadKindMissing {
		s.log.Warn("the NetworkAttachmentDefinition CRD is not served: UnderlayNetworks get no NADs until multus is installed and the controller restarted")
	} else {
		b = b.Watches(&nadv1.NetworkAttachmentDefinition{}, handler.EnqueueRequestsFromMapFunc(networksOfNAD))
	}
	return b.Complete(r)
}

func (s *setup) reservedReport(context.Context) error {
	return builder.ControllerManagedBy(s.mgr).Named("reservedip-entries").For(&v1.ReservedIP{}).
		Complete(&reservedReport{c: s.mgr.GetClient(), events: s.events, invalid: s.metrics.reservedInvalid})
}

func (s *setup) overlapReport(context.Context) error {
	// one key: every pool is compared with every other
	return builder.ControllerManagedBy(s.mgr).Named("pool-overlaps").Watches(&v1.IPPool{}, oneKey()).
		Complete(&overlapReport{c: s.mgr.GetClient(), events: s.events, overlapping: s.metrics.poolsOverlapping})
}

func (s *setup) poolConditions(context.Context) error {
	// one key: overlaps and reservations tie every pool to the others; a burst of
	// PoolAllocation writes is one reconcile (the queue holds the key once), and each
	// pool's status is written at most once per CountsInterval
	return builder.ControllerManagedBy(s.mgr).Named("pool-conditions").Watches(&v1.IPPool{}, oneKey()).
		Watches(&v1.PoolAllocation{}, oneKey()).Watches(&v1.ReservedIP{}, oneKey()).
		Complete(&poolConditions{c: s.mgr.GetClient(), counts: countsMirror{interval: s.opts.CountsInterval}})
}

func (s *setup) orphanSweep(ctx context.Context) error {
	if s.opts.OrphanInterval <= 0 {
		return nil
	}
	m := s.metrics
	sweeper := &orphans.Sweeper{Log: s.log, Cache: s.mgr.GetCache(), API: s.api, Writer: s.timed, Window: s.opts.CommitWindow,
		Found: m.orphansFound, Freed: m.orphansFreed, Unheld: m.orphansUnheld}
	if err := watchPoolsFor(ctx, s.mgr.GetCache(), sweeper); err != nil {
		return err
	}
	return s.mgr.Add(&orphanLoop{sweeper: sweeper, interval: s.opts.OrphanInterval, grace: s.opts.OrphanGrace, log: s.log})
}

func (s *setup) goneNodeRecycling(ctx context.Context) error {
	if s.opts.RecycleInterval <= 0 {
		return nil
	}
	r := newGoneNodeRecycler(s.timed, s.mgr.GetCache(), s.api, s.opts.RecycleInterval, s.opts.RecycleGrace, s.metrics.goneNodeRecycled, s.log)
	r.svc.Window = s.opts.CommitWindow
	r.svc.Pools.(*store.PoolCommitter).Window = s.opts.CommitWindow
	if err := r.watchDeletedPools(ctx, s.mgr.GetCache()); err != nil {
		return err
	}
	return s.mgr.Add(r)
}

func (s *setup) leaderFlag(context.Context) error {
	return s.mgr.Add(leaderFlag{gauge: s.metrics.leader})
}

// leaderReadiness makes only the leader ready: the webhook Service sends the apiserver's
// calls to the replica that also runs the reconcilers and registered the configuration.
func (s *setup) leaderReadiness(context.Context) error {
	return s.mgr.AddReadyzCheck("leader", func(*http.Request) error {
		select {
		case <-s.mgr.Elected():
			return nil
		default:
			return errors.New("not the elected leader")
		}
	})
}

// oneKey maps every event to one reconcile request: for jobs that recompute everything.
func oneKey() handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{}}
	})
}

// sameName maps an event to a reconcile of the object of the same name: a pool and its
// PoolAllocation share theirs.
func sameName() handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: o.GetName()}}}
	})
}

// enqueueAll maps any event to a reconcile of every object of a kind: used where one
// object's change (an Endpoint, a pool) can alter any of another kind's statuses.
func enqueueAll(c client.Reader, newList func() client.ObjectList) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		list := newList()
		if err := c.List(ctx, list); err != nil {
			return nil
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(items))
		for _, item := range items {
			if o, ok := item.(client.Object); ok {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
			}
		}
		return reqs
	})
}
