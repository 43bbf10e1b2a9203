// Package image proves what `make image` builds: an image go-containerregistry can open,
// FROM scratch with static binaries at fixed paths and modes, ipamd as entrypoint, labels
// naming the build, every binary answering --version with the image's version, and both
// install paths (kustomize, Helm) pinned to exactly that image.
package image

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/underpool/underpool/tests/harness"
)

// testRepo is not the default repository, so the test proves IMAGE_REPO reaches every pin.
const testRepo = "registry.example.test/team/underpool"

var binaries = []string{"ipamd", "underpool", "underpool-ipam", "underpool-install", "kubectl-underpool"}

type built struct {
	dir     string
	info    imageInfo
	err     error
	gitV    string
	gitHead string
}

// imageInfo mirrors build/image's image.json.
type imageInfo struct {
	Image, Digest, Version, Revision, Platform string
}

var (
	once   sync.Once
	shared built
)

// makeImage runs `make image` once for the package, into a temporary IMAGE_DIR.
func makeImage(t *testing.T) built {
	t.Helper()
	once.Do(func() {
		root := harness.RepoRoot()
		// relative to the repository, like the default bin/image: the pins must work from
		// a relative IMAGE_DIR (bin/ is git-ignored)
		rel := filepath.Join("bin", fmt.Sprintf("image-test-%d", os.Getpid()))
		shared.dir = filepath.Join(root, rel)
		cmd := exec.Command("make", "-s", "image", "IMAGE_DIR="+rel, "IMAGE_REPO="+testRepo)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			shared.err = &cmdError{"make image", err, out}
			return
		}
		data, err := os.ReadFile(filepath.Join(shared.dir, "image.json"))
		if err == nil {
			err = json.Unmarshal(data, &shared.info)
		}
		shared.err = err
		shared.gitV = gitOut(root, "describe", "--tags", "--always", "--dirty")
		shared.gitHead = gitOut(root, "rev-parse", "HEAD")
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

type cmdError struct {
	what string
	err  error
	out  []byte
}

func (e *cmdError) Error() string { return e.what + ": " + e.err.Error() + "\n" + string(e.out) }

func gitOut(dir string, args ...string) string {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, _ := cmd.Output()
	return strings.TrimSpace(string(out))
}
