package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/underpool/underpool/tests/harness"
)

// NodeState is what a netns standing for a node holds that a pod's ADD may add to (host
// connectivity: the host veth, its routes, node-side rules) and its DEL must take back:
// link names, addresses, the routes of every table and the rules, as `ip` prints them,
// sorted. Link flags are left out: a macvlan parent's change while pods hang off it is
// the kernel's, not a leftover.
type NodeState map[string][]string

// ReadNodeState reads the node netns' state once no address in it is tentative: a
// link-local address finishing duplicate address detection (and its local route
// appearing) between two readings is the kernel's doing, not a pod's.
func ReadNodeState(t *testing.T, node *harness.NetNS) NodeState {
	t.Helper()
	Eventually(t, "no tentative address in "+node.Name(), 10*time.Second, func() (bool, string) {
		out, err := node.Run("ip", "-o", "addr", "show", "tentative")
		return err == nil && strings.TrimSpace(out) == "", out
	})
	state := NodeState{}
	for what, args := range map[string][]string{
		"links": {"-o", "link", "show"}, "addresses": {"-o", "addr", "show"},
		"routes4": {"-4", "route", "show", "table", "all"}, "routes6": {"-6", "route", "show", "table", "all"},
		"rules4": {"-4", "rule", "show"}, "rules6": {"-6", "rule", "show"},
	} {
		out, err := node.Run("ip", args...)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if what == "links" {
				l = linkName(l)
			}
			lines = append(lines, l)
		}
		sort.Strings(lines)
		state[what] = lines
	}
	return state
}

// linkName is the name in a line of `ip -o link show` ("7: up1a2b@if3: <...> ...").
func linkName(line string) string {
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return line
	}
	name, _, _ := strings.Cut(strings.TrimSuffix(fields[1], ":"), "@")
	return name
}

// Diff names what differs between the state before and now, leaving out every line that
// mentions one of the links in live (the host veths of pods still running); "" when
// nothing does.
func (before NodeState) Diff(now NodeState, live ...string) string {
	var diffs []string
	for what, b := range before {
		b, n := without(b, live), without(now[what], live)
		if strings.Join(b, "\n") != strings.Join(n, "\n") {
			diffs = append(diffs, fmt.Sprintf("%s:\n  before:\n    %s\n  now:\n    %s", what,
				strings.Join(b, "\n    "), strings.Join(n, "\n    ")))
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "\n")
}

// Without is the state without the lines that mention one of links: what the node holds
// but for those pods' host veths.
func (s NodeState) Without(links ...string) NodeState {
	out := NodeState{}
	for what, lines := range s {
		out[what] = without(lines, links)
	}
	return out
}

func without(lines, links []string) []string {
	var out []string
next:
	for _, l := range lines {
		for _, name := range links {
			if l == name || strings.Contains(l, " "+name+" ") || strings.Contains(l, " "+name+"@") ||
				strings.HasPrefix(l, name+" ") || strings.HasSuffix(l, " "+name) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// RequireSameNode fails the test unless the node netns holds what it held before.
func RequireSameNode(t *testing.T, when string, before, now NodeState) {
	t.Helper()
	if d := before.Diff(now); d != "" {
		t.Fatalf("the node changed %s:\n%s", when, d)
	}
}

// NodeEnds names, in the node netns, the far ends of the veths in a pod's netns: the
// node ends of its host veths. A veth's IFLA_LINK is its peer's index in the peer's
// namespace, which here is the node's.
func NodeEnds(podNS, nodeNS string) ([]string, error) {
	var indexes []int
	err := withNS(podNS, func(h *netlink.Handle) error {
		links, err := h.LinkList()
		for _, l := range links {
			if l.Type() == "veth" {
				indexes = append(indexes, l.Attrs().ParentIndex)
			}
		}
		return err
	})
	if err != nil || len(indexes) == 0 {
		return nil, err
	}
	var names []string
	err = withNS(nodeNS, func(h *netlink.Handle) error {
		for _, i := range indexes {
			if l, err := h.LinkByIndex(i); err == nil {
				names = append(names, l.Attrs().Name)
			}
		}
		return nil
	})
	return names, err
}

func withNS(path string, fn func(h *netlink.Handle) error) error {
	h, err := netlinkHandleAt(path)
	if err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	defer h.Close()
	return fn(h)
}

// WaitLinkLocal waits until a link in the netns has its IPv6 link-local address, past
// duplicate address detection, and that address's local route: the kernel adds them once
// the link has carrier, and from a work queue, so a reading of the node's state taken
// before would see them appear later as if a pod had made them.
func WaitLinkLocal(t *testing.T, n *harness.NetNS, ifName string) {
	t.Helper()
	Eventually(t, ifName+"'s link-local address and its local route", 10*time.Second, func() (bool, string) {
		addr, err1 := n.Run("ip", "-6", "-o", "addr", "show", "dev", ifName, "scope", "link", "-tentative")
		route, err2 := n.Run("ip", "-6", "route", "show", "table", "local", "dev", ifName)
		return err1 == nil && err2 == nil && strings.Contains(addr, "fe80::") && strings.Contains(route, "local fe80::"), addr + route
	})
}
