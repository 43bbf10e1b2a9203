// Package rbac proves the generated RBAC (deploy/rbac) against a real kube-apiserver: each
// component's ServiceAccount, bound as the manifests bind it, may do what the component
// needs and nothing this package names as out of bounds. It also runs the controller
// itself as its ServiceAccount (impersonated), so a permission the markers forgot fails
// here rather than in a cluster.
package rbac

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/tests/harness"
)

const namespace = "underpool-system"

var suite struct {
	cp     *harness.ControlPlane
	client client.Client
	cs     *kubernetes.Clientset
}

func TestMain(m *testing.M) {
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "rbac: starting the control plane: %v\n", err)
		os.Exit(1)
	}
	code := func() int {
		defer cp.Stop()
		suite.cp = cp
		if suite.client, err = cp.Client(v1.AddToScheme); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if suite.cs, err = kubernetes.NewForConfig(cp.Config); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := install(context.Background()); err != nil {
			fmt.Fprintf(os.Stderr, "rbac: installing deploy/rbac: %v\n", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// install applies deploy/rbac as generated, and the ServiceAccounts and bindings the
// manifests give each component.
func install(ctx context.Context) error {
	objs := []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}}
	for _, file := range []string{"deploy/rbac/ipamd/role.yaml", "deploy/rbac/controller/role.yaml"} {
		docs, err := readYAML(filepath.Join(harness.RepoRoot(), file))
		if err != nil {
			return err
		}
		objs = append(objs, docs...)
	}
	for _, name := range []string{"underpool-ipamd", "underpool-controller"} {
		subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: namespace}}
		objs = append(objs,
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}})
	}
	objs = append(objs, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "underpool-controller"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "underpool-controller", Namespace: namespace}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "underpool-controller"}})
	for _, obj := range objs {
		if err := suite.client.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

// readYAML reads the objects of a multi-document YAML file (harness.DecodeObjects).
func readYAML(path string) ([]client.Object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	docs, err := harness.DecodeObjects(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	objs := make([]client.Object, 0, len(docs))
	for i := range docs {
		objs = append(objs, &docs[i])
	}
	return objs, nil
}

// access is one request a component might make.
type access struct {
	verb, group, resource, subresource, namespace, name string
}

func (a access) String() string {
	s := a.verb + " " + a.resource
	if a.subresource != "" {
		s += "/" + a.subresource
	}
	if a.group != "" {
		s += "." + a.group
	}
	if a.namespace != "" {
		s += " in " + a.namespace
	}
	if a.name != "" {
		s += " named " + a.name
	}
	return s
}

// allowed asks the apiserver's authorizer whether the component's ServiceAccount may.
func allowed(t *testing.T, sa string, a access) bool {
	t.Helper()
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   "system:serviceaccount:" + namespace + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: a.verb, Group: a.group, Resource: a.resource,
			Subresource: a.subresource, Namespace: a.namespace, Name: a.name},
	}}
	got, err := suite.cs.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), review, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SubjectAccessReview for %s %s: %v", sa, a, err)
	}
	return got.Status.Allowed
}

func check(t *testing.T, sa string, may, mayNot []access) {
	t.Helper()
	for _, a := range may {
		t.Run("may "+a.String(), func(t *testing.T) {
			if !allowed(t, sa, a) {
				t.Errorf("%s may not %s, which it needs", sa, a)
			}
		})
	}
	for _, a := range mayNot {
		t.Run("may not "+a.String(), func(t *testing.T) {
			if allowed(t, sa, a) {
				t.Errorf("%s may %s, which it must not", sa, a)
			}
		})
	}
}

const up = "underpool.io"

// The controller reaches one Secret, one Lease and one webhook configuration, by name:
// not other Secrets in its namespace, not any Secret elsewhere, not other components'
// leases or webhook configurations. It reads the workloads that get application pools,
// and of any other kind only the scale subresource (never the object, never a write);
// it watches pods (their metadata, to learn of other kinds' workloads), never writes one.
func TestControllerLeastPrivilege(t *testing.T) {
	check(t, "underpool-controller", []access{
		{verb: "get", resource: "secrets", namespace: namespace, name: "underpool-webhook-ca"},
		{verb: "create", resource: "secrets", namespace: namespace},
		{verb: "get", group: "coordination.k8s.io", resource: "leases", namespace: namespace, name: "underpool-controller"},
		{verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: namespace, name: "underpool-controller"},
		{verb: "create", group: "coordination.k8s.io", resource: "leases", namespace: namespace},
		{verb: "get", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations", name: "underpool-validating"},
		{verb: "update", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations", name: "underpool-validating"},
		{verb: "create", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations"},
		{verb: "list", group: up, resource: "ippools"},
		{verb: "watch", group: up, resource: "endpoints"},
		{verb: "create", group: up, resource: "ippools"},
		{verb: "update", group: up, resource: "ippools", name: "p"},
		{verb: "delete", group: up, resource: "ippools", name: "p"},
		{verb: "update", group: up, resource: "ippools", subresource: "status", name: "p"},
		// the one watcher of allocation states: the sweeper, the closing write, gone pools' states
		{verb: "watch", group: up, resource: "poolallocations"},
		{verb: "update", group: up, resource: "poolallocations", name: "p"},
		{verb: "create", group: up, resource: "poolallocations"},
		{verb: "delete", group: up, resource: "poolallocations", name: "p"},
		{verb: "update", group: up, resource: "subnets", subresource: "status", name: "s"},
		{verb: "update", group: up, resource: "reservedips", subresource: "status", name: "r"},
		{verb: "watch", group: "apps", resource: "deployments"},
		{verb: "watch", group: "apps", resource: "daemonsets"},
		{verb: "watch", group: "apps", resource: "replicasets"},
		{verb: "watch", group: "batch", resource: "jobs"},
		{verb: "watch", group: "batch", resource: "cronjobs"},
		{verb: "get", group: "example.com", resource: "widgets", subresource: "scale", namespace: "default", name: "w"},
		{verb: "watch", resource: "pods"},
		{verb: "list", resource: "pods"},
		{verb: "create", group: "events.k8s.io", resource: "events", namespace: "default"},
		// recycling the Endpoints of gone nodes: read the pod, release the record
		{verb: "get", resource: "pods", namespace: "default", name: "a"},
		{verb: "watch", resource: "nodes"},
		{verb: "update", group: up, resource: "endpoints", namespace: "default", name: "a"},
		{verb: "delete", group: up, resource: "endpoints", namespace: "default", name: "a"},
		// the NADs of UnderlayNetworks, in any namespace a network names
		{verb: "watch", group: up, resource: "underlaynetworks"},
		{verb: "update", group: up, resource: "underlaynetworks", subresource: "status", name: "n"},
		{verb: "create", group: "k8s.cni.cncf.io", resource: "network-attachment-definitions", namespace: "default"},
		{verb: "update", group: "k8s.cni.cncf.io", resource: "network-attachment-definitions", namespace: "default", name: "n"},
		{verb: "delete", group: "k8s.cni.cncf.io", resource: "network-attachment-definitions", namespace: "default", name: "n"},
	}, []access{
		{verb: "get", resource: "secrets", namespace: namespace, name: "underpool-ipamd-token"},
		{verb: "update", group: up, resource: "underlaynetworks", name: "n"},
		{verb: "delete", group: up, resource: "underlaynetworks", name: "n"},
		{verb: "get", resource: "secrets", namespace: "kube-system", name: "underpool-webhook-ca"},
		{verb: "list", resource: "secrets", namespace: namespace},
		{verb: "create", resource: "secrets", namespace: "kube-system"},
		{verb: "update", resource: "secrets", namespace: namespace, name: "underpool-webhook-ca"},
		{verb: "delete", resource: "secrets", namespace: namespace, name: "underpool-webhook-ca"},
		{verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: "kube-system", name: "kube-controller-manager"},
		{verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: namespace, name: "someone-else"},
		{verb: "delete", group: "coordination.k8s.io", resource: "leases", namespace: namespace, name: "underpool-controller"},
		{verb: "update", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations", name: "another-webhook"},
		{verb: "get", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations", name: "another-webhook"},
		{verb: "list", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations"},
		{verb: "delete", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations", name: "underpool-validating"},
		{verb: "update", group: "admissionregistration.k8s.io", resource: "mutatingwebhookconfigurations", name: "underpool-validating"},
		{verb: "update", group: up, resource: "subnets", name: "s"},
		{verb: "delete", group: up, resource: "subnets", name: "s"},
		{verb: "create", group: up, resource: "endpoints", namespace: "default"},
		{verb: "update", group: "apps", resource: "deployments", namespace: "default", name: "d"},
		{verb: "update", group: "apps", resource: "deployments", subresource: "scale", namespace: "default", name: "d"},
		{verb: "patch", group: "example.com", resource: "widgets", subresource: "scale", namespace: "default", name: "w"},
		{verb: "get", group: "example.com", resource: "widgets", namespace: "default", name: "w"},
		{verb: "list", group: "example.com", resource: "widgets"},
		{verb: "update", group: "batch", resource: "jobs", namespace: "default", name: "j"},
		{verb: "delete", resource: "pods", namespace: "default", name: "a"},
		{verb: "update", resource: "pods", namespace: "default", name: "a"},
		{verb: "update", resource: "nodes", name: "n"},
	})
}

// ipamd reads pools, never writes them; it reads and writes allocation states one by name,
// never lists or watches them (no node's cost follows another's allocations); it writes Endpoints; it
// reads pods, namespaces and nodes, and StatefulSets, ReplicaSets and Jobs one by name (a
// pod's workload: the CronJob above a Job). Nothing else.
func TestIpamdLeastPrivilege(t *testing.T) {
	check(t, "underpool-ipamd", []access{
		{verb: "watch", group: up, resource: "ippools"},
		{verb: "get", group: up, resource: "poolallocations", name: "p"},
		{verb: "create", group: up, resource: "poolallocations"},
		{verb: "update", group: up, resource: "poolallocations", name: "p"},
		{verb: "delete", group: up, resource: "poolallocations", name: "p"},
		{verb: "create", group: up, resource: "endpoints", namespace: "default"},
		{verb: "update", group: up, resource: "endpoints", namespace: "default", name: "a"},
		{verb: "delete", group: up, resource: "endpoints", namespace: "default", name: "a"},
		{verb: "watch", group: up, resource: "subnets"},
		{verb: "watch", group: up, resource: "reservedips"},
		{verb: "watch", resource: "pods"},
		{verb: "get", resource: "pods", namespace: "default", name: "a"},
		{verb: "watch", resource: "namespaces"},
		{verb: "get", resource: "nodes", name: "n"},
		{verb: "get", group: "apps", resource: "statefulsets", namespace: "default", name: "s"},
		{verb: "get", group: "apps", resource: "replicasets", namespace: "default", name: "r"},
		{verb: "get", group: "batch", resource: "jobs", namespace: "default", name: "j"},
		{verb: "create", resource: "events", namespace: "default"},
	}, []access{
		{verb: "delete", group: up, resource: "ippools", name: "p"},
		{verb: "update", group: up, resource: "ippools", name: "p"},
		{verb: "patch", group: up, resource: "ippools", name: "p"},
		{verb: "create", group: up, resource: "ippools"},
		{verb: "update", group: up, resource: "ippools", subresource: "status", name: "p"},
		{verb: "list", group: up, resource: "poolallocations"},
		{verb: "watch", group: up, resource: "poolallocations"},
		{verb: "update", group: up, resource: "subnets", name: "s"},
		{verb: "update", group: up, resource: "subnets", subresource: "status", name: "s"},
		{verb: "update", group: up, resource: "reservedips", name: "r"},
		{verb: "delete", group: up, resource: "reservedips", name: "r"},
		{verb: "list", group: "apps", resource: "statefulsets"},
		{verb: "list", group: "apps", resource: "replicasets"},
		{verb: "watch", group: "batch", resource: "jobs"},
		{verb: "get", group: "batch", resource: "cronjobs", namespace: "default", name: "c"},
		{verb: "get", resource: "secrets", namespace: namespace, name: "underpool-webhook-ca"},
		{verb: "list", resource: "secrets"},
		{verb: "update", resource: "pods", namespace: "default", name: "a"},
		{verb: "delete", resource: "pods", namespace: "default", name: "a"},
		{verb: "update", resource: "nodes", name: "n"},
		{verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: namespace, name: "underpool-controller"},
		{verb: "update", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations", name: "underpool-validating"},
		{verb: "create", group: "k8s.cni.cncf.io", resource: "network-attachment-definitions", namespace: "default"},
		{verb: "update", group: up, resource: "underlaynetworks", subresource: "status", name: "n"},
	})
}

// The generated Role is namespaced where the manifests expect it, so the RoleBinding
// the manifests add binds it.
func TestControllerRoleIsNamespaced(t *testing.T) {
	role := &rbacv1.Role{}
	err := suite.client.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: "underpool-controller"}, role)
	if apierrors.IsNotFound(err) {
		t.Fatalf("deploy/rbac/controller/role.yaml has no Role underpool-controller in %s", namespace)
	}
	if err != nil {
		t.Fatal(err)
	}
}
