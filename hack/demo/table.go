package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/underpool/underpool/tests/harness"
)

// printPods prints pod -> node -> net1 address, twice: as ipamd's Endpoint holds it for
// the pod's current sandbox, and as the kernel has it inside that sandbox's netns. The
// two must agree, so the table doubles as a check.
func (d *demo) printPods(pods []podView) {
	w := newTable()
	fmt.Fprintln(w, "POD\tNODE\tPOD UID\tENDPOINT (ipamd)\tnet1 IN POD NETNS")
	for _, p := range pods {
		fmt.Fprintf(w, "%s\t%s\t%.8s\t%s\t%s\n", p.name, p.node, p.uid, orDash(p.endpoint), orDash(p.inNetns))
		if p.endpoint == "" || p.inNetns != p.endpoint {
			d.fail("%s: its Endpoint holds %q for its sandbox, its netns has %q on net1", p.name, p.endpoint, p.inNetns)
		}
		if pfx, err := netip.ParsePrefix(p.endpoint); err == nil && !netip.MustParsePrefix(poolSubnet).Contains(pfx.Addr()) {
			d.fail("%s: %s is outside pool %s (%s)", p.name, p.endpoint, poolName, poolSubnet)
		}
	}
	_ = w.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// pingAcrossNodes picks a Deployment pod and a StatefulSet pod on another node and pings
// both ways from inside the pods' netns: the packets cross from one node's macvlan to
// the other's over the shared parent.
func (d *demo) pingAcrossNodes(pods []podView) {
	var a, b *podView
	for i := range pods {
		for j := range pods {
			p, q := &pods[i], &pods[j]
			if a == nil && p.app == deployName && q.app == stsName && p.node != q.node && p.sandbox != nil && q.sandbox != nil {
				a, b = p, q
			}
		}
	}
	if a == nil {
		d.fail("no Deployment pod and StatefulSet pod on different nodes to ping between")
		return
	}
	type probe struct {
		from, to *podView
		err      error
	}
	probes := []*probe{{from: a, to: b}, {from: b, to: a}}
	var wg sync.WaitGroup
	for _, pr := range probes {
		wg.Add(1)
		go func() { defer wg.Done(); pr.err = harness.Ping(pr.from.sandbox.NetNS, pr.to.addr(), 3) }()
	}
	wg.Wait()
	for _, pr := range probes {
		info("%s (%s) -> %s (%s) at %s: %s", pr.from.name, pr.from.node, pr.to.name, pr.to.node, pr.to.addr(), okOrFail(pr.err))
		if pr.err != nil {
			d.fail("%s cannot ping %s (%s): %v", pr.from.name, pr.to.name, pr.to.addr(), pr.err)
		}
	}
}

func okOrFail(err error) string {
	if err != nil {
		return "FAIL"
	}
	return "answered"
}

// waitRestarted waits until every StatefulSet pod is a new pod (new UID) and all pods are
// Ready, saying so for each replacement as it becomes Ready.
func (d *demo) waitRestarted(before []podView) ([]podView, error) {
	oldUID := map[string]types.UID{}
	for _, p := range before {
		if p.app == stsName {
			oldUID[p.name] = p.uid
		}
	}
	said := map[string]bool{}
	return d.waitAllReady(3*time.Minute, func(pods []podView) (bool, string) {
		var pending []string
		for _, p := range pods {
			if p.app != stsName {
				continue
			}
			if p.uid == oldUID[p.name] {
				pending = append(pending, p.name)
			}
		}
		for _, p := range pods {
			if p.app == stsName && p.uid != oldUID[p.name] && p.ready && p.endpoint != "" && !said[p.name] {
				said[p.name] = true
				info("%s: new pod %.8s Ready on %s with %s", p.name, p.uid, p.node, p.endpoint)
			}
		}
		return len(pending) == 0, "not replaced yet: " + strings.Join(pending, ", ")
	})
}

// compareAddresses says, per StatefulSet pod, whether its successor kept its address.
func (d *demo) compareAddresses(before, after []podView) {
	now := map[string]podView{}
	for _, p := range after {
		now[p.name] = p
	}
	for _, old := range before {
		if old.app != stsName {
			continue
		}
		p := now[old.name]
		if p.endpoint == old.endpoint {
			info("%s kept %s across the restart (pod %.8s on %s, now pod %.8s on %s)", p.name, p.addr(), old.uid, old.node, p.uid, p.node)
		} else {
			d.fail("%s had %s before the restart, %s after", old.name, orDash(old.endpoint), orDash(p.endpoint))
		}
	}
}

// kubectlGet shows what `kubectl get <resource>` shows. Without kubectl it asks the API
// server for the same server-side Table kubectl prints (our CRDs' printer columns), so a
// fresh machine shows the same view.
func (d *demo) kubectlGet(resource, apiPath string) {
	cmdline := fmt.Sprintf("kubectl --kubeconfig %s get %s", d.cp.KubeconfigPath, resource)
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		info("$ %s", cmdline)
		// a private cache dir keeps kubectl's discovery cache out of the user's ~/.kube
		out, err := exec.Command(kubectl, "--kubeconfig", d.cp.KubeconfigPath,
			"--cache-dir", filepath.Join(d.tmp, "kubectl-cache"), "get", resource).CombinedOutput()
		printIndented(string(out))
		if err != nil {
			d.fail("%s: %v", cmdline, err)
		}
		return
	}
	if !d.saidNoKubectl {
		info("(kubectl is not on PATH: printing the server-side Table kubectl would print)")
		d.saidNoKubectl = true
	}
	info("$ %s", cmdline)
	table, err := d.serverTable(apiPath)
	if err != nil {
		d.fail("GET %s as Table: %v", apiPath, err)
		return
	}
	printServerTable(table)
}

func (d *demo) serverTable(apiPath string) (*metav1.Table, error) {
	cs, err := kubernetes.NewForConfig(d.cp.Config)
	if err != nil {
		return nil, err
	}
	ctx, cancel := opCtx()
	defer cancel()
	raw, err := cs.Discovery().RESTClient().Get().AbsPath(apiPath).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	table := &metav1.Table{}
	if err := json.Unmarshal(raw, table); err != nil {
		return nil, fmt.Errorf("decoding Table: %w", err)
	}
	return table, nil
}

// printServerTable prints a Table as kubectl does: upper-case headers, only the columns
// of priority 0 (the others are -o wide), blank cells for missing values.
func printServerTable(t *metav1.Table) {
	if len(t.Rows) == 0 {
		info("No resources found.")
		return
	}
	w := newTable()
	var cols []int
	var header []string
	for i, c := range t.ColumnDefinitions {
		if c.Priority == 0 {
			cols = append(cols, i)
			header = append(header, strings.ToUpper(c.Name))
		}
	}
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, r := range t.Rows {
		var cells []string
		for _, i := range cols {
			v := ""
			if i < len(r.Cells) && r.Cells[i] != nil {
				v = fmt.Sprint(r.Cells[i])
			}
			cells = append(cells, v)
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	_ = w.Flush()
}

// newTable writes aligned columns, indented under the step that printed them.
func newTable() *tabwriter.Writer {
	return tabwriter.NewWriter(&indenter{}, 0, 4, 3, ' ', 0) // kubectl's spacing
}

// indenter prefixes every line with four spaces, like info.
type indenter struct{ midLine bool }

func (in *indenter) Write(b []byte) (int, error) {
	if muted.Load() {
		return len(b), nil
	}
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		if !in.midLine {
			fmt.Print("    ")
		}
		fmt.Print(line)
		in.midLine = !strings.HasSuffix(line, "\n")
	}
	return len(b), nil
}

func printIndented(s string) {
	if muted.Load() {
		return
	}
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Println("    " + line)
	}
}

// fail records a problem that does not stop the demo but makes it exit non-zero.
// Only the main goroutine calls it (the ping goroutines report back first).
func (d *demo) fail(format string, args ...any) {
	// multi-line reasons (ping output) stay readable inside the failure list
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	d.failures = append(d.failures, strings.ReplaceAll(msg, "\n", "\n      "))
}
