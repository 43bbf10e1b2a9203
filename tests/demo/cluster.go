package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/tests/harness"
)

// The multus annotations: which networks a pod wants, and what it got.
const (
	networksAnnotation = "k8s.v1.cni.cncf.io/networks"
	statusAnnotation   = "k8s.v1.cni.cncf.io/network-status"
)

// pod is one demo pod: its API object, its network namespace and what multus reported.
type pod struct {
	name, uid string
	ns        *harness.NetNS
	rt        harness.Runtime // exactly what the runtime passed at ADD, needed again at DEL
	ifName    string          // the NAD's interface in the pod (net1)
	v4, v6    string          // its addresses, as multus reported them
	status    []networkStatus

	del    func() error // CNI DEL through multus, at most once
	delRan atomic.Bool
}

// networkStatus is one entry of the network-status annotation (multi-net spec).
type networkStatus struct {
	Name      string   `json:"name"`
	Interface string   `json:"interface,omitempty"`
	IPs       []string `json:"ips,omitempty"`
	Mac       string   `json:"mac,omitempty"`
	Default   bool     `json:"default,omitempty"`
}

// createNode registers the node ipamd serves: nothing schedules here, the pods are
// bound to it by spec.nodeName as a scheduler would have done.
func (d *demo) createNode() error {
	ctx, cancel := opCtx()
	defer cancel()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName,
		Labels: map[string]string{"kubernetes.io/hostname": nodeName, "kubernetes.io/os": "linux"}}}
	if err := d.c.Create(ctx, node); err != nil {
		return fmt.Errorf("creating Node %s: %w", nodeName, err)
	}
	return nil
}

// createPools makes one pool per family; naming both in the NAD makes every pod dual stack.
func (d *demo) createPools() error {
	ctx, cancel := opCtx()
	defer cancel()
	pools := []*v1.IPPool{
		{ObjectMeta: metav1.ObjectMeta{Name: pool4}, Spec: v1.IPPoolSpec{
			Subnet: "10.250.100.0/24", IPs: []string{"10.250.100.10-10.250.100.99"}, Gateway: "10.250.100.1"}},
		{ObjectMeta: metav1.ObjectMeta{Name: pool6}, Spec: v1.IPPoolSpec{
			Subnet: "fd00:250::/64", IPs: []string{"fd00:250::10-fd00:250::ff"}}},
	}
	for _, p := range pools {
		if err := d.c.Create(ctx, p); err != nil {
			return fmt.Errorf("creating IPPool %s: %w", p.Name, err)
		}
	}
	return nil
}

// createNAD stores the underpool network as multus reads it. It is unstructured on
// purpose: the demo needs no Go types for a third-party CRD, just as a user needs none.
func (d *demo) createNAD() error {
	config, err := json.Marshal(map[string]any{
		"cniVersion": "1.1.0", "name": nadName,
		"plugins": []any{map[string]any{
			"type":     "underpool",
			"delegate": map[string]any{"type": "macvlan", "master": d.parent, "mode": "bridge"},
			"ipam": map[string]any{"socket": d.ipamd.Options.Socket,
				"ipv4Pools": []string{pool4}, "ipv6Pools": []string{pool6}},
			"logFile": filepath.Join(d.tmp, "underpool.log"),
			// the demo's "node" is this machine's root netns: give it no host veths or routes
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

// prepareMultus writes the runtime's view: a conflist whose only plugin is multus. Multus
// looks up its delegates (underpool, and through it macvlan) in ONE binDir, so that dir
// gets symlinks to our plugins and the cached peers.
func (d *demo) prepareMultus() error {
	binDir := filepath.Join(d.tmp, "cni-bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	for _, src := range []string{d.binDir, harness.CacheBinDir()} {
		entries, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range entries {
			link := filepath.Join(binDir, e.Name())
			if _, err := os.Lstat(link); err == nil {
				continue // our own binaries come first
			}
			if err := os.Symlink(filepath.Join(src, e.Name()), link); err != nil {
				return err
			}
		}
	}
	conf, err := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": "multus-demo",
		"plugins": []any{map[string]any{
			"type":       "multus",
			"kubeconfig": d.cp.KubeconfigPath,
			"cniDir":     filepath.Join(d.tmp, "multus-cache"),
			"binDir":     binDir,
			"logFile":    filepath.Join(d.tmp, "multus.log"),
			"logLevel":   "error",
			// loopback stands in for the cluster network (eth0); net1 comes from the NAD
			"delegates": []any{map[string]any{
				"cniVersion": "1.0.0", "name": "default",
				"plugins": []any{map[string]any{"type": "loopback"}},
			}},
		}},
	})
	if err != nil {
		return err
	}
	d.multus = conf
	// Plugins' stderr goes to a file: multus logs a Kubernetes event line per interface
	// there, which would drown the demo's own output. Errors still come back in results.
	stderr, err := os.Create(filepath.Join(d.tmp, "cni-stderr.log"))
	if err != nil {
		return err
	}
	d.cniStderr = stderr // closed with the temp dir
	d.cni = &harness.CNI{BinDirs: []string{d.binDir, harness.CacheBinDir()},
		CacheDir: filepath.Join(d.tmp, "cni-cache"), Stderr: stderr}
	return nil
}

// startPod does what the API server, the kubelet and the runtime do for a new pod on this
// node: store the Pod, make its sandbox netns, run CNI ADD, and read multus' status.
func (d *demo) startPod(name string) (*pod, error) {
	ctx, cancel := opCtx()
	defer cancel()
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace,
			Labels:      map[string]string{"app": "underpool-demo"},
			Annotations: map[string]string{networksAnnotation: nadName}},
		Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "pause", Image: "pause"}}},
	}
	if err := d.c.Create(ctx, obj); err != nil {
		return nil, fmt.Errorf("creating Pod %s: %w", name, err)
	}
	ns, err := harness.NewNetNS(harness.UniqueName(name + "-"))
	if err != nil {
		return nil, err
	}
	d.undo.push("netns "+ns.Name(), ns.Close)

	// multus refuses to act for a pod whose UID differs from K8S_POD_UID (a stale
	// sandbox of a recreated pod), so the runtime args carry the real one.
	p := &pod{name: name, uid: string(obj.UID), ns: ns, rt: harness.Runtime{
		ContainerID: randomContainerID(), NetNS: ns.Path(), IfName: "eth0",
		PodNamespace: namespace, PodName: name, PodUID: string(obj.UID)}}
	var once sync.Once
	var delErr error
	p.del = func() error {
		once.Do(func() {
			p.delRan.Store(true)
			ctx, cancel := opCtx()
			defer cancel()
			delErr = d.cni.Del(ctx, d.multus, p.rt)
		})
		return delErr
	}
	// Registered before ADD: a runtime follows a failed ADD with DEL, which must clean up
	// whatever half of the attachment exists.
	d.undo.pushPending("CNI DEL "+name+" through multus", func() bool { return !p.delRan.Load() }, p.del)
	d.pods = append(d.pods, p)

	if _, err := d.cni.Add(ctx, d.multus, p.rt); err != nil {
		return nil, fmt.Errorf("CNI ADD %s through multus: %w", name, err)
	}
	if err := d.readNetworkStatus(p); err != nil {
		return nil, err
	}
	return p, nil
}

// readNetworkStatus takes the pod's addresses from what multus wrote on the Pod, the same
// place `kubectl describe pod` shows them.
func (d *demo) readNetworkStatus(p *pod) error {
	ctx, cancel := opCtx()
	defer cancel()
	obj := &corev1.Pod{}
	if err := d.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: p.name}, obj); err != nil {
		return fmt.Errorf("reading Pod %s: %w", p.name, err)
	}
	raw, ok := obj.Annotations[statusAnnotation]
	if !ok {
		return fmt.Errorf("pod %s: multus wrote no %s annotation", p.name, statusAnnotation)
	}
	if err := json.Unmarshal([]byte(raw), &p.status); err != nil {
		return fmt.Errorf("pod %s: parsing %s %q: %w", p.name, statusAnnotation, raw, err)
	}
	for _, st := range p.status {
		if st.Name != namespace+"/"+nadName {
			continue
		}
		p.ifName = st.Interface
		for _, ip := range st.IPs {
			if parsed := net.ParseIP(ip); parsed != nil && parsed.To4() != nil {
				p.v4 = ip
			} else if parsed != nil {
				p.v6 = ip
			}
		}
	}
	if p.ifName == "" || p.v4 == "" || p.v6 == "" {
		return fmt.Errorf("pod %s: network-status has no dual-stack entry for %s/%s: %s", p.name, namespace, nadName, raw)
	}
	return nil
}

// deletePod removes the Pod object. Grace period 0: no kubelet will ever confirm a
// graceful termination, so the object would otherwise linger.
func (d *demo) deletePod(p *pod) error {
	ctx, cancel := opCtx()
	defer cancel()
	obj := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: namespace}}
	if err := d.c.Delete(ctx, obj, client.GracePeriodSeconds(0)); err != nil {
		return fmt.Errorf("deleting Pod %s: %w", p.name, err)
	}
	return nil
}

// waitPoolsEmpty checks, from the API and not any cache, that DEL gave every address back
// and removed the Endpoint records.
func (d *demo) waitPoolsEmpty() error {
	ctx, cancel := opCtx()
	defer cancel()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var state []string
		for _, name := range []string{pool4, pool6} {
			p := &v1.IPPool{}
			if err := d.c.Get(ctx, client.ObjectKey{Name: name}, p); err != nil {
				return fmt.Errorf("reading IPPool %s: %w", name, err)
			}
			if p.Status.AllocatedIPCount != 0 {
				state = append(state, fmt.Sprintf("%s still has %d allocated (%s)", name, p.Status.AllocatedIPCount, p.Status.Allocated))
			}
		}
		var eps v1.EndpointList
		if err := d.c.List(ctx, &eps, client.InNamespace(namespace)); err != nil {
			return fmt.Errorf("listing Endpoints: %w", err)
		}
		if n := len(eps.Items); n > 0 {
			state = append(state, fmt.Sprintf("%d Endpoints left in %s", n, namespace))
		}
		if len(state) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after DEL: %v", state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// randomContainerID looks like a real sandbox ID (64 hex digits).
func randomContainerID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
