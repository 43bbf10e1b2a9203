// Package kubelet is a kubelet stand-in for one simulated node: it does for
// the pods bound to its node what a kubelet and its container runtime do for
// the network, and nothing else (there are no containers).
//
// Per node it registers the Node (labels, capacity, Ready), renews its Lease
// and Ready heartbeat so the real node-lifecycle controller keeps it Ready,
// and for each pod bound to it makes a sandbox: a real network namespace, a
// containerd-like sandbox ID and CNI ADD through the real multus thin plugin
// (which reads the pod's networks annotation and the NADs). The pod is then
// reported Running and Ready, so StatefulSets and Deployments progress. On
// deletion it honours the grace period like a kubelet, runs CNI DEL (retried
// until it succeeds), removes the namespace and deletes the pod object with
// grace period 0 and a UID precondition.
//
// With Config.NodeNetNS, multus and the plugins run inside a network
// namespace standing for the node (its uplinks, the pods' host veths and
// their routes live there, not in the machine's own namespace); the stand-in
// forwards the apiserver's loopback address into it for multus.
//
// A Kubelet can be stopped (a dead kubelet: no heartbeats, no pod handling,
// namespaces stay as running containers would) and started again (it re-lists
// its pods; sandboxes it made are remembered, not made again).
//
// Usage:
//
//	kl, err := kubelet.New(kubelet.Config{
//		NodeName: "node-a", RestConfig: cp.Config,
//		CNI: harness.CNI{BinDirs: bins, CacheDir: dir + "/cni-cache"},
//		Conflist: kubelet.MultusConflist(...), IpamdSocket: ipamdA.Options.Socket,
//		NodeNetNS: nodeA, // optional: a *harness.NetNS with the node's uplinks
//	})
//	if err := kl.Start(); err != nil { ... }
//	defer kl.Close()
//	sb, ok := kl.Sandbox("ns", "web-0") // sb.NetNS.Path(): check net1 inside
package kubelet
