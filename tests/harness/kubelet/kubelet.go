package kubelet

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/underpool/underpool/tests/harness"
)

// Kubelet is the stand-in for one node. Its methods are safe for concurrent use.
type Kubelet struct {
	cfg      Config
	cs       kubernetes.Interface
	events   record.EventBroadcaster
	recorder record.EventRecorder
	cniSlots chan struct{} // bounds concurrent CNI calls
	// apiserver reaches the control plane from NodeNetNS; nil without one
	apiserver *harness.Forwarder

	mu        sync.Mutex
	sandboxes map[string]*Sandbox    // namespace/name -> the pod's current sandbox
	podLocks  map[string]*sync.Mutex // namespace/name -> serialises that pod's work
	run       *runState              // nil while stopped
	closed    bool
}

// runState is what one Start..Stop period owns; a restart builds a new one,
// as a restarted kubelet re-lists everything.
type runState struct {
	ctx    context.Context // ends with Stop
	cancel context.CancelFunc
	queue  workqueue.TypedRateLimitingInterface[string]
	pods   corelisters.PodLister
	wg     sync.WaitGroup
}

// New checks cfg and prepares a stand-in; Start brings it up.
func New(cfg Config) (*Kubelet, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	rc := rest.CopyConfig(cfg.RestConfig)
	rc.UserAgent = "kubelet-standin/" + cfg.NodeName
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubelet %s: client: %w", cfg.NodeName, err)
	}
	k := &Kubelet{
		cfg:       cfg,
		cs:        cs,
		cniSlots:  make(chan struct{}, cfg.MaxParallelCNI),
		sandboxes: map[string]*Sandbox{},
		podLocks:  map[string]*sync.Mutex{},
	}
	// Events go through client-go's recorder, as the kubelet's do, so they
	// carry source component "kubelet" and the node as host.
	if cfg.NodeNetNS != nil {
		if k.apiserver, err = forwardAPIServer(cfg); err != nil {
			return nil, err
		}
	}
	k.events = record.NewBroadcaster()
	k.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	k.recorder = k.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: cfg.NodeName})
	return k, nil
}

// NodeName is the node this stand-in serves.
func (k *Kubelet) NodeName() string { return k.cfg.NodeName }

// Client is the stand-in's own clientset.
func (k *Kubelet) Client() kubernetes.Interface { return k.cs }

// Running reports whether the stand-in is started.
func (k *Kubelet) Running() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.run != nil
}

// Start registers (or takes over) the Node, starts the heartbeats and the
// pod handling, and returns once the pod cache is synced. Starting again
// after Stop is how a kubelet restart is simulated.
func (k *Kubelet) Start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return errors.New("kubelet " + k.cfg.NodeName + ": closed")
	}
	if k.run != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	startCtx, startCancel := context.WithTimeout(ctx, time.Minute)
	defer startCancel()
	if err := k.registerNode(startCtx); err != nil {
		cancel()
		return err
	}
	run := &runState{
		ctx:    ctx,
		cancel: cancel,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			// a failed sandbox is retried after 1 s, 2 s, 4 s, ... up to 10 s,
			// a shorter version of the kubelet's pod worker backoff
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 10*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "kubelet-" + k.cfg.NodeName}),
	}
	factory := informers.NewSharedInformerFactoryWithOptions(k.cs, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "spec.nodeName=" + k.cfg.NodeName }))
	podInformer := factory.Core().V1().Pods()
	run.pods = podInformer.Lister()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			run.queue.Add(key)
		}
	}
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		cancel()
		return fmt.Errorf("kubelet %s: pod handler: %w", k.cfg.NodeName, err)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(startCtx.Done(), podInformer.Informer().HasSynced) {
		cancel()
		factory.Shutdown()
		return fmt.Errorf("kubelet %s: pod cache did not sync", k.cfg.NodeName)
	}
	// Sandboxes of pods that went while we were down are torn down like a
	// kubelet's housekeeping does: their keys sync to "pod gone".
	for key := range k.sandboxes {
		run.queue.Add(key)
	}
	run.wg.Add(2 + k.cfg.Workers)
	go func() { defer run.wg.Done(); k.renewLease(ctx) }()
	go func() { defer run.wg.Done(); k.postStatus(ctx) }()
	for range k.cfg.Workers {
		go func() { defer run.wg.Done(); k.work(run) }()
	}
	go func() { <-ctx.Done(); factory.Shutdown() }()
	k.run = run
	k.logf("started")
	return nil
}

// Stop simulates a dead kubelet: heartbeats and pod handling stop (a CNI
// call in flight finishes first), sandboxes and their namespaces stay, as
// running containers would. Start resumes.
func (k *Kubelet) Stop() {
	k.mu.Lock()
	run := k.run
	k.run = nil
	k.mu.Unlock()
	if run == nil {
		return
	}
	run.cancel()
	run.queue.ShutDown()
	run.wg.Wait()
	k.logf("stopped")
}

// Close stops the stand-in and removes every namespace it made, without
// DEL: test cleanup, not pod deletion.
func (k *Kubelet) Close() error {
	k.Stop()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	k.events.Shutdown()
	var errs []error
	if k.apiserver != nil {
		errs = append(errs, k.apiserver.Close())
	}
	for key, sb := range k.sandboxes {
		if err := sb.NetNS.Close(); err != nil {
			errs = append(errs, fmt.Errorf("kubelet %s: sandbox of %s: %w", k.cfg.NodeName, key, err))
		}
		delete(k.sandboxes, key)
	}
	return errors.Join(errs...)
}

// forwardAPIServer makes the apiserver's loopback address answer in the node netns too.
func forwardAPIServer(cfg Config) (*harness.Forwarder, error) {
	u, err := url.Parse(cfg.RestConfig.Host)
	if err != nil || u.Port() == "" {
		return nil, fmt.Errorf("kubelet %s: RestConfig.Host %q names no host:port to forward into the node netns", cfg.NodeName, cfg.RestConfig.Host)
	}
	f, err := harness.ForwardInto(cfg.NodeNetNS, u.Host)
	if err != nil {
		return nil, fmt.Errorf("kubelet %s: %w", cfg.NodeName, err)
	}
	return f, nil
}

func (k *Kubelet) logf(format string, args ...any) {
	fmt.Fprintf(k.cfg.Log, "%s kubelet[%s]: %s\n", time.Now().Format("15:04:05.000"), k.cfg.NodeName, fmt.Sprintf(format, args...))
}
