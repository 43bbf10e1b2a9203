package importer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// peerState is the peer-neutral form every reader produces and plan consumes.
type peerState struct {
	subnets  []peerSubnet
	pools    []peerPool
	reserved []peerReserved
	allocs   []peerAlloc
	skipped  []Skip
	notes    []string
}

type peerSubnet struct {
	from, name string // from names the peer object, e.g. "SpiderSubnet net-1"
	spec       v1.SubnetSpec
}

type peerPool struct {
	from string // e.g. "SpiderIPPool v4-pool"
	name string // the underpool IPPool name
	spec v1.IPPoolSpec
}

type peerReserved struct {
	from, name string
	ips        []string
}

// peerAlloc is one address the peer gave a pod.
type peerAlloc struct {
	from        string
	pool        string // underpool IPPool name
	ip          netip.Addr
	namespace   string
	pod         string
	podUID      string // empty when the peer does not record it
	ifName      string
	containerID string
	node        string
}

// listPeer lists a peer kind; a kind the apiserver does not serve (the peer was never
// installed) lists nothing.
func listPeer(ctx context.Context, c client.Reader, gvk schema.GroupVersionKind) ([]unstructured.Unstructured, error) {
	l := &unstructured.UnstructuredList{}
	l.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := c.List(ctx, l); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) || isNoMatch(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing %s: %w: the import needs get/list on %s", gvk.Kind, err, gvk.GroupKind())
	}
	return l.Items, nil
}

func isNoMatch(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "no matches for kind") || strings.Contains(err.Error(), "could not find the requested resource"))
}

var invalidName = regexp.MustCompile(`[^a-z0-9.-]+`)

// poolName derives an underpool object name from a peer object's name.
func poolName(prefix, name string) string {
	n := invalidName.ReplaceAllString(strings.ToLower(prefix+name), "-")
	n = strings.Trim(n, "-.")
	if len(n) > 253 {
		n = strings.Trim(n[:253], "-.")
	}
	return n
}

// fromField decodes obj's field (spec, status) into v through JSON; the error names the
// object and the field.
func fromField(obj *unstructured.Unstructured, field string, v any) error {
	raw, ok := obj.Object[field]
	if !ok {
		return nil
	}
	data, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s %s: %s: %w", obj.GetKind(), obj.GetName(), field, err)
	}
	return nil
}

// parseAddrOrPrefix reads "10.6.1.5" or "10.6.1.5/16" (Spiderpool writes both forms).
func parseAddrOrPrefix(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), nil
	}
	return netip.ParseAddr(s)
}

// importedLabelKey marks every object an import created.
const importedLabelKey = "underpool.io/imported"

func importedLabel() map[string]string {
	return map[string]string{importedLabelKey: "true"}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func derefInt(n *int64) int64 {
	if n == nil {
		return 0
	}
	return *n
}
