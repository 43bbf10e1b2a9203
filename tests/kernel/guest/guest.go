// Package guest holds the tests that run inside the VM tests/kernel boots: a Debian kernel with
// ipvlan, 802.1q, dummy, bonding and soft-RoCE, which this machine's kernel lacks. The host
// compiles them statically (CGO_ENABLED=0 go test -c) into the VM's initramfs with the
// project's plugins, the containernetworking delegates and ipamd; ipamd runs in the VM against
// the host's kube-apiserver (10.0.2.2 through QEMU's user networking), so allocations are real
// CRD writes; the plugins run through libcni as a runtime drives them, in a network namespace
// standing for the node. The host reads the results from the VM's second serial port.
//
// Run anywhere else, the package does nothing: `go test ./tests/...` passes over it and runs
// tests/kernel's TestDataPlaneInAVM, which runs these tests in the VM and reports each.
package guest

// What the host (tests/kernel) puts into the initramfs, and the environment /underpool/run
// sets; both halves use these names.
const (
	Dir        = "/underpool"
	BinDir     = Dir + "/bin"
	Kubeconfig = Dir + "/kubeconfig"
	// InVMEnv names this VM's Node; set only by /underpool/run, so it marks the guest.
	InVMEnv = "UNDERPOOL_VM_NODE"
	// CommitWindow is the release protocol's bound: the guest's ipamd and the controller
	// on the host run with the same.
	CommitWindow = "8s"
)

const (
	logDir = "/var/log/underpool"
	socket = "/run/underpool/ipamd.sock"
)
