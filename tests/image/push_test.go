package image

import (
	"io"
	"log"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// craneVersion is the crane the README tells users to push with.
const craneVersion = "v0.22.1"

// The README's push command works as written: the real crane pushes underpool.tar into a
// registry (go-containerregistry's own, on loopback) and the image pulled back is the one
// built, labels and all.
func TestCranePushAndPullBack(t *testing.T) {
	b := makeImage(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	dst := strings.TrimPrefix(srv.URL, "http://") + "/team/underpool:" + b.gitV
	cmd := exec.Command("go", "run", "github.com/google/go-containerregistry/cmd/crane@"+craneVersion,
		"push", filepath.Join(b.dir, "underpool.tar"), dst)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("crane push: %v\n%s", err, out)
	}
	ref, err := name.ParseReference(dst, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pulling %s back: %v", dst, err)
	}
	built := openBoth(t, b)
	pc, _ := pulled.ConfigName()
	bc, _ := built.ConfigName()
	if pc != bc {
		t.Fatalf("pushed image has config %s, the built one %s", pc, bc)
	}
	cf, err := pulled.ConfigFile()
	if err != nil || cf.Config.Labels["org.opencontainers.image.version"] != b.gitV {
		t.Fatalf("pulled image's version label: %v (%v)", cf, err)
	}
}
