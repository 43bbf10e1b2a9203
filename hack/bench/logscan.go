package main

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// interruptedDump is what a netlink dump says when other ADDs changed the node's
// links, addresses or routes while it ran, retry after retry (issue 11).
const interruptedDump = "netlink call interrupted"

// pluginLogs are the files plugins write in the work dir: their stderr and the log
// files their configs name (underpool's per contestant, whereabouts').
func pluginLogs(work string) []string {
	paths, _ := filepath.Glob(filepath.Join(work, "*.log"))
	var out []string
	for _, p := range paths {
		if !strings.HasPrefix(filepath.Base(p), "ipamd-") {
			out = append(out, p)
		}
	}
	return out
}

// logSizes remembers how long each plugin log is now, so a later count covers only
// what was written since.
func logSizes(work string) map[string]int64 {
	sizes := map[string]int64{}
	for _, p := range pluginLogs(work) {
		if st, err := os.Stat(p); err == nil {
			sizes[p] = st.Size()
		}
	}
	return sizes
}

// countInLogs counts the lines holding needle written to the plugin logs since from,
// and returns the first such line.
func countInLogs(work string, from map[string]int64, needle string) (int, string, error) {
	n, sample := 0, ""
	for _, p := range pluginLogs(work) {
		f, err := os.Open(p)
		if err != nil {
			return 0, "", err
		}
		if _, err := f.Seek(from[p], io.SeekStart); err != nil {
			f.Close()
			return 0, "", err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			if line := sc.Text(); strings.Contains(line, needle) {
				if n == 0 {
					sample = line
				}
				n++
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return 0, "", err
		}
	}
	return n, sample, nil
}
