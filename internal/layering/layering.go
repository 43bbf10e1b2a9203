// Package layering states which of underpool's packages may import which, and checks it
// (`make check-deps`). The rules are the design's seams written as data: the API and the
// wire protocol depend on nothing of ours; the core decides and writes nothing; the node
// daemon builds on both; the controller shares the daemon's store and release path but
// never the daemon itself; the kubectl plugin links only the API and the core; the CNI
// plugins link the wire protocol, never the daemon. docs/architecture.md draws the same.
package layering

import (
	"fmt"
	"sort"
	"strings"
)

// Module is the import path every rule is relative to.
const Module = "github.com/underpool/underpool"

// Rule: packages at or under From may import, of the module's own packages, only those at
// or under one of May (plus their own tree, always).
type Rule struct {
	From string
	May  []string
	Why  string
}

// Rules, most specific first: a package follows the first rule whose From it is in.
var Rules = []Rule{
	{From: "api", Why: "the CRD types and annotations are what every piece shares: they depend on none of them"},
	{From: "netplan", Why: "the network plan is pure data and arithmetic"},
	{From: "rpc", May: []string{"netplan"}, Why: "the socket protocol carries a plan and nothing of the daemon"},
	{From: "core", May: []string{"api", "netplan"}, Why: "the core decides; it never reads or writes the cluster"},
	{From: "ipamd", May: []string{"api", "rpc", "core", "netplan"}, Why: "the node daemon builds on the API and the core, never on the controller or the plugins"},
	{From: "controller", May: []string{"api", "core", "ipamd/store", "ipamd/service", "ipamd/cluster"},
		Why: "the controller shares the daemon's store and release path, never the daemon itself"},
	{From: "simulation", May: []string{"api", "rpc", "core", "ipamd", "controller"}, Why: "the simulation runs ipamds and the controller together"},
	{From: "kubectlplugin", May: []string{"api", "core", "internal/buildinfo"}, Why: "the kubectl plugin links only the API and the core"},
	{From: "chain/ipamplugin", May: []string{"rpc", "netplan"}, Why: "the IPAM-only plugin configures no interface"},
	{From: "chain", May: []string{"rpc", "netplan", "underlay", "rdma"}, Why: "the meta-plugin talks to ipamd only through the socket protocol"},
	{From: "underlay", May: []string{"netplan"}, Why: "the kernel side applies a plan; it decides nothing"},
	{From: "rdma", Why: "RDMA device discovery and moves stand alone"},
	{From: "internal", May: []string{"internal"}, Why: "build info and the CNI installer are leaves"},
	{From: "plugins", May: []string{"chain", "internal"}, Why: "a plugin binary is a main around its package"},
	{From: "conflist-examples", Why: "the examples users copy, embedded for the tests that run them"},
	{From: "cmd", May: []string{""}, Why: "a command wires anything"},
	{From: "tests", May: []string{""}, Why: "tests drive anything"},
	{From: "hack", May: []string{""}, Why: "tools drive anything"},
	{From: "deploy", May: []string{""}, Why: "manifest tests read anything"},
	{From: "build", May: []string{""}, Why: "image build tools read anything"},
}

// under: rel is dir or inside it ("" holds everything).
func under(rel, dir string) bool {
	return dir == "" || rel == dir || strings.HasPrefix(rel, dir+"/")
}

// ruleFor is the first rule rel falls under, or nil.
func ruleFor(rel string) *Rule {
	for i := range Rules {
		if under(rel, Rules[i].From) {
			return &Rules[i]
		}
	}
	return nil
}

// Violations lists every import of imports (package -> its imports, full paths) that
// breaks the rules, and every package of the module no rule covers.
func Violations(imports map[string][]string) []string {
	var out []string
	for pkg, deps := range imports {
		rel, ok := relative(pkg)
		if !ok {
			continue
		}
		rule := ruleFor(rel)
		if rule == nil {
			out = append(out, fmt.Sprintf("%s: no layering rule covers it: add one to internal/layering.Rules", rel))
			continue
		}
		for _, dep := range deps {
			drel, ok := relative(dep)
			if !ok || under(drel, rule.From) || allowed(drel, rule.May) {
				continue
			}
			out = append(out, fmt.Sprintf("%s imports %s: %s may import only %v (%s)", rel, drel, rule.From, rule.May, rule.Why))
		}
	}
	sort.Strings(out)
	return out
}

func allowed(rel string, may []string) bool {
	for _, m := range may {
		if under(rel, m) {
			return true
		}
	}
	return false
}

// relative is pkg's path inside the module; ok is false for packages outside it.
func relative(pkg string) (string, bool) {
	if pkg == Module {
		return "", true
	}
	rel, ok := strings.CutPrefix(pkg, Module+"/")
	return rel, ok
}
