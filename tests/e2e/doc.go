// Package e2e is what every end-to-end package shares: the suite set-up each package's
// TestMain runs (Main: a real kube-apiserver and etcd on loopback, the CRDs, the webhook,
// ipamd; fails rather than skips when not root or a tool is missing), the object builders,
// the netns and peer helpers, the waits, the metrics scrape, and the invariant checks every
// test that changes pods ends with (no address held twice, pool status equal to the
// Endpoints, nothing left). The tests themselves live in cni, network, lifecycle and
// controller; tests/README.md maps them.
package e2e
