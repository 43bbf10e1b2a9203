package image

import (
	"archive/tar"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// openBoth opens the docker-loadable tarball by its tag and the OCI layout's only image,
// and checks they are the same image image.json names.
func openBoth(t *testing.T, b built) v1.Image {
	t.Helper()
	tag, err := name.NewTag(b.info.Image)
	if err != nil {
		t.Fatal(err)
	}
	fromTar, err := tarball.ImageFromPath(filepath.Join(b.dir, "underpool.tar"), &tag)
	if err != nil {
		t.Fatalf("underpool.tar does not hold %s: %v", tag, err)
	}
	idx, err := layout.ImageIndexFromPath(filepath.Join(b.dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("OCI layout: want one image, got %v (%v)", im, err)
	}
	if ref := im.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; ref != b.info.Image {
		t.Fatalf("OCI layout ref.name %q, want %q", ref, b.info.Image)
	}
	fromLayout, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	// the docker tarball format keeps config and layers but not the manifest (docker load
	// synthesizes one), so the two are the same image when their configs are the same
	if dl, _ := fromLayout.Digest(); dl.String() != b.info.Digest {
		t.Fatalf("OCI layout holds %s, image.json says %s", dl, b.info.Digest)
	}
	ct, _ := fromTar.ConfigName()
	cl, _ := fromLayout.ConfigName()
	if ct != cl {
		t.Fatalf("tarball and layout differ: config %s vs %s", ct, cl)
	}
	return fromLayout
}

func TestImageConfigEntrypointAndLabels(t *testing.T) {
	b := makeImage(t)
	if b.info.Image != testRepo+":"+b.gitV || b.info.Version != b.gitV {
		t.Fatalf("image.json %+v: want %s:%s (IMAGE_TAG defaults to git describe)", b.info, testRepo, b.gitV)
	}
	cf, err := openBoth(t, b).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/opt/underpool/bin/ipamd" {
		t.Fatalf("entrypoint %q, want /opt/underpool/bin/ipamd", got)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Fatalf("platform %s/%s", cf.OS, cf.Architecture)
	}
	l := cf.Config.Labels
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  b.gitV,
		"org.opencontainers.image.revision": b.gitHead,
		"org.opencontainers.image.source":   "https://github.com/underpool/underpool",
	} {
		if l[k] != want {
			t.Errorf("label %s = %q, want %q", k, l[k], want)
		}
	}
	if _, err := time.Parse(time.RFC3339, l["org.opencontainers.image.created"]); err != nil {
		t.Errorf("label org.opencontainers.image.created %q: %v", l["org.opencontainers.image.created"], err)
	}
}

// The image is FROM scratch: exactly our directories and binaries, root-owned, 0755, and
// every binary static (no ELF interpreter), since there is no libc to load one.
func TestImageFilesModesAndVersions(t *testing.T) {
	b := makeImage(t)
	img := openBoth(t, b)
	rc := mutate.Extract(img)
	defer rc.Close()
	root := t.TempDir()
	want := map[string]byte{"opt": tar.TypeDir, "opt/underpool": tar.TypeDir, "opt/underpool/bin": tar.TypeDir}
	for _, bin := range binaries {
		want["opt/underpool/bin/"+bin] = tar.TypeReg
	}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/") // flattening drops directories' trailing slash
		typ, ok := want[name]
		if !ok || typ != h.Typeflag {
			t.Fatalf("unexpected entry %s (type %c) in the image", h.Name, h.Typeflag)
		}
		delete(want, name)
		if h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mode %o uid %d gid %d, want 0755 root", h.Name, h.Mode, h.Uid, h.Gid)
		}
		if h.Typeflag == tar.TypeReg {
			extract(t, tr, filepath.Join(root, filepath.Base(h.Name)))
		}
	}
	if len(want) > 0 {
		t.Fatalf("missing from the image: %v", want)
	}
	for _, bin := range binaries {
		path := filepath.Join(root, bin)
		assertStatic(t, path)
		out, err := exec.Command(path, "--version").CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != bin+" "+b.gitV {
			t.Errorf("%s --version: %q (%v), want %q", bin, got, err, bin+" "+b.gitV)
		}
	}
}

func extract(t *testing.T, r io.Reader, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		t.Fatal(err)
	}
}

func assertStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked: a FROM-scratch image has no loader for it", filepath.Base(path))
		}
	}
}
