package main

import (
	"fmt"
	"os/exec"
	"strings"
	"time"
)

type gitInfo struct {
	version, revision string
	created           time.Time // the commit's time: reproducible, unlike the clock
}

func readGit(version string) (gitInfo, error) {
	var g gitInfo
	var err error
	if g.version = version; g.version == "" {
		if g.version, err = git("describe", "--tags", "--always", "--dirty"); err != nil {
			return g, err
		}
	}
	if g.revision, err = git("rev-parse", "HEAD"); err != nil {
		return g, err
	}
	ts, err := git("log", "-1", "--format=%ct")
	if err != nil {
		return g, err
	}
	var sec int64
	if _, err := fmt.Sscan(ts, &sec); err != nil {
		return g, fmt.Errorf("commit time %q: %w", ts, err)
	}
	g.created = time.Unix(sec, 0).UTC()
	return g, nil
}

func git(args ...string) (string, error) {
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w (the image builder runs in a git checkout)", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
