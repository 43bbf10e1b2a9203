// Command testsummary reads `go test -json` on stdin and prints what a person needs from
// it: each package's result line as it comes, the output of every failed test, and at the
// end how many tests ran, passed, failed and skipped, with every skip's reason (a skip
// never passes silently). It exits non-zero when any test or package failed. The
// counts are appended to the file named by -counts, so `make test` can add them up.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type key struct{ pkg, test string }

func main() {
	countsFile := flag.String("counts", "", "append 'passed failed skipped' to this file")
	flag.Parse()
	out := map[key][]string{} // a running test's output, printed if it fails
	var passed, failed, skipped int
	var skips, failures []string
	pkgFailed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Println(sc.Text()) // a build error or anything not JSON: show it as is
			continue
		}
		k := key{e.Package, e.Test}
		switch {
		case e.Action == "output" && e.Test != "":
			out[k] = append(out[k], e.Output)
		case e.Action == "output" && isPackageLine(e.Output):
			fmt.Print(e.Output)
		case e.Action == "output":
			out[k] = append(out[k], e.Output)
		case e.Action == "pass" && e.Test != "":
			passed++
			delete(out, k)
		case e.Action == "skip" && e.Test != "":
			skipped++
			skips = append(skips, fmt.Sprintf("%s %s: %s", short(e.Package), e.Test, reason(out[k])))
			delete(out, k)
		case e.Action == "fail" && e.Test != "":
			failed++
			failures = append(failures, short(e.Package)+" "+e.Test)
			fmt.Print(strings.Join(out[k], ""))
			delete(out, k)
		case e.Action == "fail": // a package: its own output (a panic, a TestMain failure)
			pkgFailed = true
			fmt.Print(strings.Join(out[k], ""))
		}
	}
	sort.Strings(skips)
	if len(skips) > 0 {
		fmt.Println("skipped, with their reasons:")
		for _, s := range skips {
			fmt.Println("  " + s)
		}
	}
	if len(failures) > 0 {
		fmt.Println("failed: " + strings.Join(failures, ", "))
	}
	fmt.Printf("tests: %d ran, %d passed, %d failed, %d skipped\n", passed+failed+skipped, passed, failed, skipped)
	if *countsFile != "" {
		f, err := os.OpenFile(*countsFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%d %d %d\n", passed, failed, skipped)
			_ = f.Close()
		}
	}
	if failed > 0 || pkgFailed {
		os.Exit(1)
	}
}

// isPackageLine is go test's one line per package: "ok  \tpkg\t1.2s", "FAIL\tpkg", "?   \tpkg\t[no test files]".
func isPackageLine(s string) bool {
	return strings.HasPrefix(s, "ok  \t") || strings.HasPrefix(s, "FAIL\t") || strings.HasPrefix(s, "?   \t")
}

// reason is a skipped test's message: its output without the --- SKIP line.
func reason(lines []string) string {
	var parts []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") {
			continue
		}
		parts = append(parts, l)
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " ")
}

func short(pkg string) string { return strings.TrimPrefix(pkg, "github.com/underpool/underpool/") }
