package main

import "testing"

func TestReasonDropsTheSkipLineAndKeepsTheMessage(t *testing.T) {
	got := reason([]string{"=== RUN   TestX\n", "    x_test.go:3: no ipvlan in this kernel\n", "--- SKIP: TestX (0.00s)\n"})
	if got != "x_test.go:3: no ipvlan in this kernel" {
		t.Fatalf("reason = %q", got)
	}
	if got := reason(nil); got != "(no reason given)" {
		t.Fatalf("reason of nothing = %q", got)
	}
}

func TestPackageLinesAreRecognised(t *testing.T) {
	for _, l := range []string{"ok  \tp\t0.1s\n", "FAIL\tp\t0.2s\n", "?   \tp\t[no test files]\n"} {
		if !isPackageLine(l) {
			t.Errorf("%q is a package line", l)
		}
	}
	if isPackageLine("    x_test.go:3: ok\n") {
		t.Error("a test's output is no package line")
	}
}
