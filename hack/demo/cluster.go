package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/harness"
	"github.com/underpool/underpool/tests/harness/kubelet"
)

// simNode is one simulated node: its own ipamd (as the DaemonSet would run it) and a
// kubelet stand-in that makes sandboxes (netns + CNI ADD through multus) for the pods
// the scheduler binds to it.
type simNode struct {
	name    string
	ipamd   *harness.Ipamd
	kubelet *kubelet.Kubelet
}

// createPool makes the pool the NAD names.
func (d *demo) createPool() error {
	ctx, cancel := opCtx()
	defer cancel()
	p := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: poolName, Finalizers: []string{v1.PoolProtection}}, Spec: v1.IPPoolSpec{
		Subnet: poolSubnet, IPs: []string{poolRange}, Gateway: poolGateway}}
	if err := d.c.Create(ctx, p); err != nil {
		return fmt.Errorf("creating IPPool %s: %w", poolName, err)
	}
	return nil
}

// createNAD stores the underpool network as multus reads it. It is unstructured on
// purpose: the demo needs no Go types for a third-party CRD, just as a user needs none.
// It names no ipamd socket: which daemon serves a pod is its node's business (each
// kubelet stand-in passes its node's socket as UNDERPOOL_IPAMD_SOCKET, as a node's
// runtime environment would).
func (d *demo) createNAD() error {
	config, err := json.Marshal(map[string]any{
		"cniVersion": "1.1.0", "name": nadName,
		"plugins": []any{map[string]any{
			"type":     "underpool",
			"delegate": map[string]any{"type": "macvlan", "master": d.parent, "mode": "bridge"},
			"ipam":     map[string]any{"ipv4Pools": []string{poolName}},
			"logFile":  filepath.Join(d.tmp, "underpool.log"),
			// the simulated nodes share this machine's root netns: no host veths or routes
			"hostConnectivity": map[string]any{"enabled": false},
		}},
	})
	if err != nil {
		return err
	}
	nad := &unstructured.Unstructured{}
	nad.SetAPIVersion("k8s.cni.cncf.io/v1")
	nad.SetKind("NetworkAttachmentDefinition")
	nad.SetNamespace(namespace)
	nad.SetName(nadName)
	if err := unstructured.SetNestedField(nad.Object, string(config), "spec", "config"); err != nil {
		return err
	}
	ctx, cancel := opCtx()
	defer cancel()
	if err := d.c.Create(ctx, nad); err != nil {
		return fmt.Errorf("creating NetworkAttachmentDefinition %s/%s: %w", namespace, nadName, err)
	}
	return nil
}

// startNode starts one simulated node: its ipamd first (it serves allocations only once
// its caches are synced), then the kubelet stand-in, which registers the Node. It runs
// inside undo.build: it registers how to undo what it makes.
func (d *demo) startNode(name string) (*simNode, error) {
	opts := harness.DefaultIpamdOptions(d.binDir, d.cp.KubeconfigPath, name, d.tmp)
	ipamd, err := harness.StartIpamd(opts)
	if err != nil {
		return nil, err
	}
	d.undo.push("ipamd of "+name, func() error {
		if err := ipamd.Stop(); err != nil {
			return fmt.Errorf("%w; end of its log:\n%s", err, lastLines(ipamd.LogPath, 3))
		}
		return nil
	})
	n := &simNode{name: name, ipamd: ipamd}

	// The node's runtime config: the multus thin plugin, its delegates linked into one
	// bin dir, its cache and log under the node's own folder.
	dir := filepath.Join(d.tmp, name)
	conflist, err := kubelet.MultusConflist(kubelet.MultusConfig{Kubeconfig: d.cp.KubeconfigPath,
		BinDirs: []string{d.binDir, harness.CacheBinDir()}, Dir: dir})
	if err != nil {
		return nil, err
	}
	// Plugins' stderr goes to a file: multus logs a Kubernetes event line per interface
	// there, which would drown the demo's output. Errors still reach the kubelet log.
	cniStderr, err := d.createFile(filepath.Join(d.tmp, "cni-stderr-"+name+".log"))
	if err != nil {
		return nil, err
	}
	klog, err := d.createFile(filepath.Join(d.tmp, "kubelet-"+name+".log"))
	if err != nil {
		return nil, err
	}
	kl, err := kubelet.New(kubelet.Config{NodeName: name, RestConfig: d.cp.Config,
		CNI: harness.CNI{BinDirs: []string{d.binDir, harness.CacheBinDir()}, CacheDir: filepath.Join(dir, "cni-cache"), Stderr: cniStderr,
			Env: []string{kubelet.LogDirEnv + "=" + d.tmp}}, // plugins log under d.tmp
		Conflist: conflist, IpamdSocket: opts.Socket, Log: klog})
	if err != nil {
		return nil, err
	}
	// Close removes the sandboxes' namespaces (their macvlans go with them) without
	// DEL: the whole cluster goes next, so there is nothing to give addresses back to.
	d.undo.push("kubelet stand-in of "+name+" (and its pods' netns)", kl.Close)
	if err := kl.Start(); err != nil {
		return nil, err
	}
	n.kubelet = kl
	return n, nil
}

// createFile makes a log file that is closed with the temp dir.
func (d *demo) createFile(path string) (*os.File, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	d.files = append(d.files, f)
	return f, nil
}

// podTemplate is a pod asking for the underlay network as net1, spread over the nodes
// the way replicas usually are.
func podTemplate(app string) corev1.PodTemplateSpec {
	labels := map[string]string{"app": app, demoLabel: "true"}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{networksAnnotation: nadName}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers:                    []corev1.Container{{Name: "main", Image: "registry.k8s.io/pause:3.10"}},
			TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname",
				WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}}},
		},
	}
}

func (d *demo) createWorkloads() error {
	ctx, cancel := opCtx()
	defer cancel()
	selector := func(app string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: deployName},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(deployReplicas), Selector: selector(deployName), Template: podTemplate(deployName)}}
	if err := d.c.Create(ctx, dep); err != nil {
		return fmt.Errorf("creating Deployment %s: %w", deployName, err)
	}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: stsName},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To(stsReplicas), Selector: selector(stsName), Template: podTemplate(stsName)}}
	if err := d.c.Create(ctx, sts); err != nil {
		return fmt.Errorf("creating StatefulSet %s: %w", stsName, err)
	}
	return nil
}

// rollingRestart does what `kubectl rollout restart statefulset/web` does.
func (d *demo) rollingRestart() error {
	ctx, cancel := opCtx()
	defer cancel()
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil,
		`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339)))
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: stsName}}
	if err := d.c.Patch(ctx, sts, patch); err != nil {
		return fmt.Errorf("patching StatefulSet %s: %w", stsName, err)
	}
	return nil
}

// deleteWorkloads deletes both as `kubectl delete` does: background propagation, the
// garbage collector then deletes the pods and the kubelets let them go.
func (d *demo) deleteWorkloads() error {
	ctx, cancel := opCtx()
	defer cancel()
	for _, obj := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: deployName}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: stsName}},
	} {
		if err := d.c.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
			return fmt.Errorf("deleting %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

// podView is one pod as the tables show it.
type podView struct {
	name, node, app string
	uid             types.UID
	ready           bool
	terminating     bool
	endpoint        string // net1 address ipamd's Endpoint holds for the pod's current sandbox
	inNetns         string // global addresses on net1 inside the sandbox, as the kernel has them
	sandbox         *kubelet.Sandbox
}

// addr is the pod's address without its prefix length ("" when it has none).
func (p podView) addr() string {
	pfx, err := netip.ParsePrefix(p.endpoint)
	if err != nil {
		return ""
	}
	return pfx.Addr().String()
}

// snapshot reads the demo's pods, their Endpoints and their sandboxes, sorted: the
// Deployment's pods first, then the StatefulSet's by ordinal.
func (d *demo) snapshot() ([]podView, error) {
	ctx, cancel := opCtx()
	defer cancel()
	var pods corev1.PodList
	if err := d.c.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{demoLabel: "true"}); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	var eps v1.EndpointList
	if err := d.c.List(ctx, &eps, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing Endpoints: %w", err)
	}
	byName := map[string]*v1.Endpoint{}
	for i := range eps.Items {
		byName[eps.Items[i].Name] = &eps.Items[i]
	}
	var out []podView
	for _, p := range pods.Items {
		v := podView{name: p.Name, node: p.Spec.NodeName, app: p.Labels["app"], uid: p.UID,
			ready: harness.PodReady(&p), terminating: p.DeletionTimestamp != nil}
		if n := d.node(p.Spec.NodeName); n != nil {
			if sb, ok := n.kubelet.Sandbox(namespace, p.Name); ok && sb.PodUID == p.UID {
				v.sandbox = &sb
				v.inNetns = strings.Join(harness.GlobalAddrs(sb.NetNS.Path(), "net1"), ",")
				if ep := byName[p.Name]; ep != nil && ep.Status.PodUID == string(p.UID) {
					for _, itf := range ep.Status.Interfaces {
						if itf.Interface == "net1" && itf.ContainerID == sb.ContainerID && itf.Detached == nil && len(itf.IPs) > 0 {
							v.endpoint = itf.IPs[0].Address
						}
					}
				}
			}
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].app != out[j].app {
			return out[i].app == deployName
		}
		if len(out[i].name) != len(out[j].name) {
			return len(out[i].name) < len(out[j].name) // web-2 before web-10
		}
		return out[i].name < out[j].name
	})
	return out, nil
}

func (d *demo) node(name string) *simNode {
	for _, n := range d.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// waitAllReady waits until the Deployment's and the StatefulSet's pods are all there,
// Ready, none terminating, each with its address in its sandbox. extra, when set, is
// called on every poll and must hold too (e.g. "every pod replaced").
func (d *demo) waitAllReady(timeout time.Duration, extra func([]podView) (bool, string)) ([]podView, error) {
	var pods []podView
	err := d.eventually("all pods Ready", timeout, func() (bool, string, error) {
		var err error
		if pods, err = d.snapshot(); err != nil {
			return false, "", err
		}
		extraOK, extraWhy := true, ""
		if extra != nil {
			extraOK, extraWhy = extra(pods) // every poll: it may report progress
		}
		want := map[string]int{deployName: int(deployReplicas), stsName: int(stsReplicas)}
		var states []string
		for _, p := range pods {
			if p.ready && !p.terminating && p.endpoint != "" {
				want[p.app]--
			}
			states = append(states, fmt.Sprintf("%s ready=%v terminating=%v node=%q endpoint=%q", p.name, p.ready, p.terminating, p.node, p.endpoint))
		}
		if len(pods) != int(deployReplicas+stsReplicas) || want[deployName] != 0 || want[stsName] != 0 {
			return false, strings.Join(states, "; "), nil
		}
		return extraOK, extraWhy, nil
	})
	return pods, err
}

// waitNothingLeft waits, reading the API and not any cache, until no demo pod, no
// Endpoint and no allocated address is left, and no kubelet keeps a sandbox.
func (d *demo) waitNothingLeft(timeout time.Duration) error {
	return d.eventually("nothing left", timeout, func() (bool, string, error) {
		ctx, cancel := opCtx()
		defer cancel()
		var pods corev1.PodList
		if err := d.c.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{demoLabel: "true"}); err != nil {
			return false, "", err
		}
		if n := len(pods.Items); n > 0 {
			return false, fmt.Sprintf("%d pods left", n), nil
		}
		var eps v1.EndpointList
		if err := d.c.List(ctx, &eps, client.InNamespace(namespace)); err != nil {
			return false, "", err
		}
		if n := len(eps.Items); n > 0 {
			return false, fmt.Sprintf("%d Endpoints left (%s ...)", n, eps.Items[0].Name), nil
		}
		state, err := d.poolState(ctx, poolName)
		if err != nil {
			return false, "", err
		}
		if state.AllocatedIPCount != 0 {
			return false, fmt.Sprintf("pool %s still has %d allocated (%s)", poolName, state.AllocatedIPCount, state.Allocated), nil
		}
		for _, n := range d.nodes {
			if sbs := n.kubelet.Sandboxes(); len(sbs) > 0 {
				return false, fmt.Sprintf("%s keeps the sandbox of %s", n.name, sbs[0].PodName), nil
			}
		}
		return true, "", nil
	})
}

// poolState reads the pool's allocation state from its PoolAllocation, as ipamd commits it
// (the counts on the IPPool's status follow it at a bounded rate): none, or an earlier
// pool's, is nothing allocated.
func (d *demo) poolState(ctx context.Context, name string) (v1.AllocationState, error) {
	p := &v1.IPPool{}
	if err := d.c.Get(ctx, client.ObjectKey{Name: name}, p); err != nil {
		return v1.AllocationState{}, err
	}
	alloc := &v1.PoolAllocation{}
	if err := d.c.Get(ctx, client.ObjectKey{Name: name}, alloc); apierrors.IsNotFound(err) {
		return v1.AllocationState{}, nil
	} else if err != nil {
		return v1.AllocationState{}, err
	}
	return v1.StateOf(p, alloc), nil
}

// eventually polls cond every 250 ms until it holds, fails, or timeout passes; the
// timeout error names what was awaited and the last reason cond gave.
func (d *demo) eventually(what string, timeout time.Duration, cond func() (bool, string, error)) error {
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		ok, why, err := cond()
		last = why
		return ok, err
	})
	if err != nil && last != "" {
		return fmt.Errorf("waiting %s for %s: %w (%s)", timeout, what, err, last)
	}
	if err != nil {
		return fmt.Errorf("waiting %s for %s: %w", timeout, what, err)
	}
	return nil
}
