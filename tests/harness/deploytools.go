package harness

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Kubectl is the kubectl built into the tool cache (the control plane's version), built on
// first use: a kubectl from the machine's PATH may be older than the apiserver it talks to.
func Kubectl() (string, error) {
	if err := EnsureTools("controlplane", "kubectl"); err != nil {
		return "", err
	}
	return filepath.Join(CacheBinDir(), "kubectl"), nil
}

// Helm is helm v3 built from the Go module proxy into the tool cache.
func Helm() (string, error) {
	if err := EnsureTools("helm", "helm"); err != nil {
		return "", err
	}
	return filepath.Join(CacheBinDir(), "helm"), nil
}

// RenderKustomize is `kubectl kustomize dir`, decoded into objects.
func RenderKustomize(dir string) ([]unstructured.Unstructured, []byte, error) {
	kubectl, err := Kubectl()
	if err != nil {
		return nil, nil, err
	}
	return renderWith(kubectl, "kustomize", dir)
}

// RenderChart is `helm template underpool chart args...`, decoded into objects.
func RenderChart(chart string, args ...string) ([]unstructured.Unstructured, []byte, error) {
	helm, err := Helm()
	if err != nil {
		return nil, nil, err
	}
	return renderWith(helm, append([]string{"template", "underpool", chart}, args...)...)
}

func renderWith(bin string, args ...string) ([]unstructured.Unstructured, []byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("%s %v: %w\n%s", filepath.Base(bin), args, err, stderr.String())
	}
	objs, err := DecodeObjects(out)
	return objs, out, err
}

// DecodeObjects splits a multi-document YAML stream into objects, skipping empty documents.
func DecodeObjects(data []byte) ([]unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			return objs, nil
		} else if err != nil {
			return nil, err
		}
		if len(m) > 0 {
			objs = append(objs, unstructured.Unstructured{Object: m})
		}
	}
}

// ContainerImages lists "<kind>/<name>/<container>=<image>" for every container and init
// container of the workloads among objs.
func ContainerImages(objs []unstructured.Unstructured) map[string]string {
	images := map[string]string{}
	for _, o := range objs {
		for _, field := range []string{"containers", "initContainers"} {
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", field)
			for _, c := range cs {
				cm, _ := c.(map[string]any)
				img, _ := cm["image"].(string)
				images[fmt.Sprintf("%s/%s/%v", o.GetKind(), o.GetName(), cm["name"])] = img
			}
		}
	}
	return images
}
