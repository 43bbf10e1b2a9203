// Package harness runs the REAL pieces underpool is tested against: a local
// etcd + kube-apiserver, Linux network namespaces and veth links, and CNI
// plugins driven through libcni exactly as a container runtime drives them.
//
// It is shared by the end-to-end tests (tests/e2e/...), the CLI, RBAC and kernel
// tests, the demo (hack/demo), the benchmark and the scale runs (hack/bench, hack/scale),
// so it favours two properties over brevity:
//
//   - nothing outlives the caller: child processes carry Pdeathsig, every
//     resource has a Close/Stop, and StopOnInterrupt turns Ctrl-C into cleanup;
//   - nothing leaks into the caller's network namespace: netlink work inside
//     a namespace goes through handles bound to that namespace, so no OS
//     thread is ever left switched into another namespace.
//
// Most helpers need root (CAP_NET_ADMIN, CAP_SYS_ADMIN); tests should call
// RequireRoot first.
package harness
