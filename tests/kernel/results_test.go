package kernel

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// event is one line of test2json's output, as the guest wrote it to its second serial port.
type event struct {
	Action string
	Test   string
	Output string
}

// guestTest is one test or subtest run in the guest: how it ended ("" when it never did:
// the VM died or timed out while it ran), what it printed, and its subtests in run order.
type guestTest struct {
	name     string // the last element of its name
	action   string
	output   []string
	children []*guestTest
}

// guestResults is everything the guest reported.
type guestResults struct {
	tests       []*guestTest // top-level tests in run order
	pkgAction   string       // "pass" or "fail" once the test binary ended
	pkgOutput   []string     // output outside any test: TestMain's setup, the logs dumped on failure
	unparsed    []string     // lines that were not test2json events
	byFullName  map[string]*guestTest
	eventsCount int
}

func readResults(path string) (*guestResults, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &guestResults{byFullName: map[string]*guestTest{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r") // a serial line may still turn \n into \r\n
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e event
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Action == "" {
			r.unparsed = append(r.unparsed, line)
			continue
		}
		r.eventsCount++
		r.add(e)
	}
	return r, sc.Err()
}

func (r *guestResults) add(e event) {
	if e.Test == "" {
		switch e.Action {
		case "output":
			r.pkgOutput = append(r.pkgOutput, e.Output)
		case "pass", "fail":
			r.pkgAction = e.Action
		}
		return
	}
	gt := r.test(e.Test)
	switch e.Action {
	case "output":
		gt.output = append(gt.output, e.Output)
	case "pass", "fail", "skip":
		gt.action = e.Action
	}
}

// test finds or makes the node of a full name ("TestX/sub"), its parents too.
func (r *guestResults) test(full string) *guestTest {
	if gt, ok := r.byFullName[full]; ok {
		return gt
	}
	i := strings.LastIndex(full, "/")
	gt := &guestTest{name: full[i+1:]}
	if i < 0 {
		r.tests = append(r.tests, gt)
	} else {
		parent := r.test(full[:i])
		parent.children = append(parent.children, gt)
	}
	r.byFullName[full] = gt
	return gt
}

// replay makes each guest test a subtest here, with its output, its subtests and its end:
// so `go test` and make test's summary count, name and explain every test the VM ran.
func replay(t *testing.T, gt *guestTest) {
	t.Run(gt.name, func(t *testing.T) {
		var said []string
		for _, line := range gt.output {
			if isFraming(line) {
				continue
			}
			said = append(said, strings.TrimRight(line, "\n"))
		}
		if len(said) > 0 && gt.action != "skip" { // a skip's reason is said once, below
			t.Log("in the VM:\n" + strings.Join(said, "\n"))
		}
		for _, c := range gt.children {
			replay(t, c)
		}
		switch gt.action {
		case "fail":
			t.Error("failed in the VM")
		case "skip":
			t.Skip("in the VM: " + strings.TrimSpace(strings.Join(said, " ")))
		case "":
			t.Error("never finished in the VM: it died or was stopped while this test ran")
		}
	})
}

// isFraming tells test2json's own lines (=== RUN, --- PASS, ...) from what a test printed.
func isFraming(line string) bool {
	s := strings.TrimSpace(line)
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME", "--- PASS", "--- FAIL", "--- SKIP"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// reportGuest turns the VM run into this test's result: a subtest per guest test, and a
// failure naming the reason when the VM never booted, its tests never started or the test
// binary itself failed outside any test.
func reportGuest(t *testing.T, run *vmRun) {
	t.Helper()
	res, err := readResults(run.resultsPath)
	if err != nil || res.eventsCount == 0 {
		t.Fatalf("no test results from the VM (%v): %s", err, run.failure())
	}
	for _, gt := range res.tests {
		replay(t, gt)
	}
	if len(res.unparsed) > 0 {
		t.Logf("lines from the VM's results port that are no test2json events:\n%s", strings.Join(res.unparsed, "\n"))
	}
	if run.timedOut || run.exitCode < 0 {
		// the guest stopped half-way: what it left in the API proves nothing
		t.Fatalf("the guest's tests did not finish; their own output:\n%s\n%s", strings.Join(res.pkgOutput, ""), run.failure())
	}
	if res.pkgAction != "pass" || run.exitCode != 0 {
		t.Errorf("the guest's test binary did not pass (result %q, exit %d); its own output:\n%s\n%s",
			res.pkgAction, run.exitCode, strings.Join(res.pkgOutput, ""), run.failure())
	}
}
