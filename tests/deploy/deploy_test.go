// Package deploy proves the two install paths, deploy/ (kustomize) and the Helm chart
// deploy/helm/underpool, install the same thing: the chart's copies of the generated CRDs
// and ClusterRoles are fresh, its default rendering equals kustomize's object by object,
// it lints, and a real kube-apiserver accepts what it renders.
package deploy

import (
	"path/filepath"

	"github.com/underpool/underpool/tests/harness"
)

const namespace = "underpool-system"

func repo(parts ...string) string {
	return filepath.Join(append([]string{harness.RepoRoot()}, parts...)...)
}

func chartDir() string { return repo("deploy", "helm", "underpool") }
