package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// DefaultCRDPaths are installed into every control plane: our own CRDs
// (generated into deploy/crds) and the third-party ones the tests need, such
// as multus' NetworkAttachmentDefinition (tests/testdata/crds). A missing
// directory is tolerated; an explicitly requested one is not.
func DefaultCRDPaths() []string {
	root := RepoRoot()
	return []string{
		filepath.Join(root, "deploy", "crds"),
		filepath.Join(root, "tests", "testdata", "crds"),
	}
}

// ReadCRDs reads every CustomResourceDefinition from YAML/JSON files and
// directories (not recursive). Multi-document files are split and documents
// of other kinds are skipped. A CRD name seen twice keeps its last definition.
func ReadCRDs(paths []string, tolerateMissing bool) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, os.ErrNotExist) && tolerateMissing:
			continue
		case err != nil:
			return nil, fmt.Errorf("CRD path: %w", err)
		case !st.IsDir():
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			switch filepath.Ext(e.Name()) {
			case ".yaml", ".yml", ".json":
				if !e.IsDir() {
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
		}
	}
	byName := map[string]*apiextensionsv1.CustomResourceDefinition{}
	var order []string
	for _, f := range files {
		crds, err := readCRDFile(f)
		if err != nil {
			return nil, err
		}
		for _, crd := range crds {
			if _, seen := byName[crd.Name]; !seen {
				order = append(order, crd.Name)
			}
			byName[crd.Name] = crd
		}
	}
	out := make([]*apiextensionsv1.CustomResourceDefinition, 0, len(order))
	for _, name := range order {
		out = append(out, byName[name])
	}
	return out, nil
}

func readCRDFile(path string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return crds, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if meta.Kind != "CustomResourceDefinition" {
			continue // empty documents, RBAC next to a CRD, ...
		}
		if meta.APIVersion != apiextensionsv1.SchemeGroupVersion.String() {
			return nil, fmt.Errorf("%s: CRD uses %s, the apiserver only serves %s",
				path, meta.APIVersion, apiextensionsv1.SchemeGroupVersion)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(doc, crd); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		crds = append(crds, crd)
	}
}

// InstallCRDs creates the CRDs (updating any that already exist) and waits
// until every one is Established, i.e. its resources are being served.
func InstallCRDs(ctx context.Context, cfg *rest.Config, crds []*apiextensionsv1.CustomResourceDefinition) error {
	cs, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	api := cs.ApiextensionsV1().CustomResourceDefinitions()
	for _, crd := range crds {
		crd = crd.DeepCopy()
		_, err := api.Create(ctx, crd, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			var old *apiextensionsv1.CustomResourceDefinition
			if old, err = api.Get(ctx, crd.Name, metav1.GetOptions{}); err == nil {
				crd.ResourceVersion = old.ResourceVersion
				_, err = api.Update(ctx, crd, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return fmt.Errorf("install CRD %s: %w", crd.Name, err)
		}
	}
	for _, crd := range crds {
		if err := waitEstablished(ctx, cs, crd.Name); err != nil {
			return err
		}
	}
	return nil
}

func waitEstablished(ctx context.Context, cs apiextensionsclient.Interface, name string) error {
	var last, rejected error
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		crd, err := cs.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err
			return false, nil // transient: keep polling until ctx ends
		}
		for _, c := range crd.Status.Conditions {
			switch {
			case c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue:
				return true, nil
			case c.Type == apiextensionsv1.NamesAccepted && c.Status == apiextensionsv1.ConditionFalse:
				// A names conflict never resolves by waiting: fail with the reason.
				rejected = fmt.Errorf("CRD %s: names not accepted: %s", name, c.Message)
				return false, rejected
			}
		}
		last = errors.New("not Established yet")
		return false, nil
	})
	switch {
	case rejected != nil:
		return rejected
	case err != nil:
		return fmt.Errorf("CRD %s: %w (last: %v)", name, err, last)
	}
	return nil
}
