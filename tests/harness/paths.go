package harness

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// modulePath identifies our go.mod while walking up, so that a go.mod of some
// other module (for example one under .cache/modules) is never taken for ours.
const modulePath = "github.com/underpool/underpool"

// RepoRoot returns the repository root: the nearest directory, walking up from
// the working directory, whose go.mod declares our module. Tests run with the
// package directory as working directory and programs are usually started
// from inside the repo, so this covers both; the location of this source file
// is the fallback for binaries started from elsewhere.
func RepoRoot() string {
	if wd, err := os.Getwd(); err == nil {
		if root, ok := findModuleRoot(wd); ok {
			return root
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		if root, ok := findModuleRoot(filepath.Dir(file)); ok {
			return root
		}
	}
	wd, _ := os.Getwd()
	return wd
}

func findModuleRoot(dir string) (string, bool) {
	for {
		if isOurModule(filepath.Join(dir, "go.mod")) {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func isOurModule(goMod string) bool {
	f, err := os.Open(goMod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`) == modulePath
		}
	}
	return false
}

// CacheDir is the git-ignored tool cache filled by tests/tools/build.sh:
// $UNDERPOOL_CACHE when set (the script honours the same variable), else
// <repo>/.cache.
func CacheDir() string {
	if dir := os.Getenv("UNDERPOOL_CACHE"); dir != "" {
		return dir
	}
	return filepath.Join(RepoRoot(), ".cache")
}

// CacheBinDir holds the prebuilt third-party binaries: kube-apiserver, etcd,
// the containernetworking plugins, cnitool, multus and whereabouts.
func CacheBinDir() string { return filepath.Join(CacheDir(), "bin") }
