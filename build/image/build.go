package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BinDir is where the binaries sit in the image; the manifests and the chart call them there.
const BinDir = "/opt/underpool/bin"

// binaries are the packages in the image; the first is the entrypoint. kubectl-underpool
// rides along so `kubectl exec` into an ipamd pod can explain what that node sees.
var binaries = []string{"./cmd/ipamd", "./plugins/underpool", "./plugins/underpool-ipam", "./cmd/underpool-install", "./cmd/kubectl-underpool"}

type options struct {
	repo, tag, version, out, arch, source string
}

func run(o options) error {
	g, err := readGit(o.version)
	if err != nil {
		return err
	}
	if o.tag == "" {
		o.tag = g.version
	}
	work, err := os.MkdirTemp("", "underpool-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := compile(work, o.arch, g.version); err != nil {
		return err
	}
	img, err := assemble(work, o, g)
	if err != nil {
		return err
	}
	return writeOutputs(img, o, g)
}

// compile builds static binaries: CGO off, so they run on an image with no libc.
func compile(dir, arch, version string) error {
	args := append([]string{"build", "-trimpath",
		"-ldflags", "-s -w -X github.com/underpool/underpool/internal/buildinfo.Version=" + version,
		"-o", dir + string(filepath.Separator)}, binaries...)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", strings.Join(binaries, " "), err)
	}
	return nil
}

// assemble makes an OCI image of one layer on an empty base. Times come from the commit,
// not the clock, so the same commit gives the same digest.
func assemble(dir string, o options, g gitInfo) (v1.Image, error) {
	var files []string
	for _, b := range binaries {
		files = append(files, filepath.Join(dir, filepath.Base(b)))
	}
	layer, err := binaryLayer(files, BinDir, g.created)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:   layer,
		History: v1.History{CreatedBy: "underpool make image: " + strings.Join(binaries, " "), Created: v1.Time{Time: g.created}},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.arch
	cf.Created = v1.Time{Time: g.created}
	cf.Config.Entrypoint = []string{BinDir + "/ipamd"}
	cf.Config.Env = []string{"PATH=" + BinDir}
	cf.Config.Labels = labels(o, g)
	return mutate.ConfigFile(img, cf)
}

func labels(o options, g gitInfo) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "underpool",
		"org.opencontainers.image.description": "underlay IPAM and CNI meta-plugin for Kubernetes: ipamd, the underpool and underpool-ipam CNI plugins, underpool-install, kubectl-underpool",
		"org.opencontainers.image.version":     g.version,
		"org.opencontainers.image.revision":    g.revision,
		"org.opencontainers.image.source":      o.source,
		"org.opencontainers.image.created":     g.created.UTC().Format(time.RFC3339),
	}
}
