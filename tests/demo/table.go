package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/ipamd/api/v1"
	"github.com/underpool/underpool/tests/harness"
)

// printAddresses prints pod -> interface -> addresses -> pools. Addresses come from
// multus' network-status, pools from the Endpoint ipamd keeps per pod; the two, and the
// kernel, must agree, so the table doubles as a check.
func (d *demo) printAddresses() error {
	ctx, cancel := opCtx()
	defer cancel()
	var eps v1.EndpointList
	if err := d.c.List(ctx, &eps, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("listing Endpoints: %w", err)
	}
	byPod := map[string]*v1.Endpoint{}
	for i := range eps.Items {
		byPod[eps.Items[i].Name] = &eps.Items[i]
	}

	w := newTable()
	fmt.Fprintln(w, "POD\tNETWORK\tINTERFACE\tIPv4\tIPv6\tPOOLS\tMAC")
	for _, p := range d.pods {
		for _, st := range p.status {
			if st.Name != namespace+"/"+nadName {
				continue // the cluster network (loopback stand-in) is not ours to show
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.name, st.Name, st.Interface, p.v4, p.v6,
				strings.Join(d.poolsOf(p, byPod[p.name]), ", "), st.Mac)
		}
		for _, ip := range []string{p.v4, p.v6} {
			if ok, err := harness.HasAddr(p.ns.Path(), p.ifName, net.ParseIP(ip)); err != nil || !ok {
				d.fail("%s: %s in netns %s does not carry %s (%v)", p.name, p.ifName, p.ns.Name(), ip, err)
			}
		}
	}
	return w.Flush()
}

// poolsOf returns the pools the Endpoint names for the pod's addresses, recording a
// failure when ipamd's record and multus' report disagree.
func (d *demo) poolsOf(p *pod, ep *v1.Endpoint) []string {
	if ep == nil {
		d.fail("%s: no Endpoint %s/%s", p.name, namespace, p.name)
		return []string{"?"}
	}
	if ep.Status.PodUID != p.uid || ep.Status.Node != nodeName {
		d.fail("%s: Endpoint says pod UID %q on %q, want %q on %q", p.name, ep.Status.PodUID, ep.Status.Node, p.uid, nodeName)
	}
	var pools []string
	found := map[string]bool{}
	for _, itf := range ep.Status.Interfaces {
		if itf.Interface != p.ifName || itf.ContainerID != p.rt.ContainerID {
			continue
		}
		for _, ip := range itf.IPs {
			addr, _, _ := net.ParseCIDR(ip.Address)
			found[addr.String()] = true
			pools = append(pools, ip.Pool)
		}
	}
	for _, ip := range []string{p.v4, p.v6} {
		if !found[net.ParseIP(ip).String()] {
			d.fail("%s: multus reports %s but Endpoint %s/%s does not hold it", p.name, ip, namespace, p.name)
		}
	}
	return pools
}

// printPingMatrix has every pod ping every other pod on both families, all at once: each
// ping takes about half a second and they are independent.
func (d *demo) printPingMatrix() {
	type cell struct{ v4, v6 error }
	n := len(d.pods)
	cells := make([][]cell, n)
	var wg sync.WaitGroup
	for i := range d.pods {
		cells[i] = make([]cell, n)
		for j := range d.pods {
			if i == j {
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); cells[i][j].v4 = harness.Ping(d.pods[i].ns, d.pods[j].v4, 3) }()
			go func() { defer wg.Done(); cells[i][j].v6 = harness.Ping(d.pods[i].ns, d.pods[j].v6, 3) }()
		}
	}
	wg.Wait()

	w := newTable()
	header := []string{"FROM \\ TO"}
	for _, p := range d.pods {
		header = append(header, p.name)
	}
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for i, from := range d.pods {
		row := []string{from.name}
		for j, to := range d.pods {
			if i == j {
				row = append(row, "-")
				continue
			}
			row = append(row, "v4 "+okOrFail(cells[i][j].v4)+"  v6 "+okOrFail(cells[i][j].v6))
			for _, c := range []struct {
				ip  string
				err error
			}{{to.v4, cells[i][j].v4}, {to.v6, cells[i][j].v6}} {
				if c.err != nil {
					d.fail("%s cannot ping %s (%s): %v", from.name, to.name, c.ip, c.err)
				}
			}
		}
		fmt.Fprintln(w, strings.Join(row, "\t"))
	}
	_ = w.Flush()
}

func okOrFail(err error) string {
	if err != nil {
		return "FAIL"
	}
	return "ok"
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
