package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ManifestImageName is the image name deploy/manifests use; the kustomization's images:
// entry (and the overlay written here) rewrite it to the real reference.
const ManifestImageName = "ghcr.io/underpool/underpool"

// Info is image.json: what was built, for scripts and the image test.
type Info struct {
	Image    string `json:"image"` // repository:tag
	Digest   string `json:"digest"`
	Version  string `json:"version"`
	Revision string `json:"revision"`
	Platform string `json:"platform"`
}

func writeOutputs(img v1.Image, o options, g gitInfo) error {
	ref, err := name.NewTag(o.repo + ":" + o.tag)
	if err != nil {
		return fmt.Errorf("--repo %q --tag %q: %w", o.repo, o.tag, err)
	}
	if err := os.RemoveAll(o.out); err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	lp, err := layout.Write(filepath.Join(o.out, "oci"), empty.Index)
	if err != nil {
		return err
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref.String()})); err != nil {
		return err
	}
	if err := tarball.WriteToFile(filepath.Join(o.out, "underpool.tar"), ref, img); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	info := Info{Image: ref.String(), Digest: digest.String(), Version: g.version, Revision: g.revision, Platform: "linux/" + o.arch}
	if err := writeJSON(filepath.Join(o.out, "image.json"), info); err != nil {
		return err
	}
	if err := writePins(o); err != nil {
		return err
	}
	fmt.Printf("built %s (%s, %s) into %s\n", info.Image, info.Digest, info.Platform, o.out)
	return nil
}

// writePins pins both install paths to this image from the same two values, so kustomize
// and Helm cannot drift apart on which image they run.
func writePins(o options) error {
	deploy, err := filepath.Abs("deploy")
	if err != nil {
		return err
	}
	// both absolute: Rel cannot relate a relative --out (the default bin/image) to deploy/
	overlay, err := filepath.Abs(filepath.Join(o.out, "deploy"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		return err
	}
	base, err := filepath.Rel(overlay, deploy)
	if err != nil {
		return err
	}
	kust := fmt.Sprintf(`# written by make image: deploy/ pinned to the image it built (kubectl apply -k bin/image/deploy)
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %s
images:
- name: %s
  newName: %s
  newTag: %q
`, base, ManifestImageName, o.repo, o.tag)
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		return err
	}
	values := fmt.Sprintf(`# written by make image: the chart pinned to the image it built (helm install ... -f bin/image/values.yaml)
image:
  repository: %s
  tag: %q
`, o.repo, o.tag)
	return os.WriteFile(filepath.Join(o.out, "values.yaml"), []byte(values), 0o644)
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
