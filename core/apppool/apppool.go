// Package apppool is the shared vocabulary of fixed-IP application pools: the name of the
// pool carved for a workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob
// or any controller with a scale subresource) from a Subnet (the annotations its pod
// template carries live with the API, in api/v1), the labels on that pool, how a pod
// finds its workload (workload.go), and the carving itself (carve.go). The controller
// creates and sizes the pools; ipamd's selection sends the workload's pods to them.
package apppool

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	v1 "github.com/underpool/underpool/api/v1"
)

// Labels on an application pool.
const (
	LabelOwnerHash = "underpool.io/app-owner"
	LabelSubnet    = "underpool.io/subnet"
	LabelReclaim   = "underpool.io/reclaim"
	// AnnotationOwner holds the full "kind/namespace/name" (labels are too short for it).
	AnnotationOwner = "underpool.io/app-owner"
)

// Workload names the workload an application pool is carved for. Kind is a built-in
// kind's name ("Deployment", "CronJob": KindDeployment...) or, for any other controller,
// "Kind.group" ("Widget.example.com"), as KindOf names it.
type Workload struct{ Kind, Namespace, Name string }

func (w Workload) String() string { return w.Kind + "/" + w.Namespace + "/" + w.Name }

// Hash is a label-safe digest of the workload's identity.
func (w Workload) Hash() string {
	sum := sha256.Sum256([]byte(w.String()))
	return hex.EncodeToString(sum[:])[:32]
}

// PoolName is the name of the workload's pool for a family: readable when it fits, and
// always unique through the hash suffix.
func (w Workload) PoolName(family v1.IPFamily) string { return w.PoolNameFor("", family) }

// PoolNameFor is PoolName for one interface of a multi-NIC workload ("" = every interface).
func (w Workload) PoolNameFor(ifName string, family v1.IPFamily) string {
	suffix := "v4"
	if family == v1.IPv6 {
		suffix = "v6"
	}
	if ifName != "" {
		suffix = ifName + "-" + suffix
	}
	base := fmt.Sprintf("auto-%s-%s-%s", w.Namespace, strings.ToLower(w.Kind), w.Name)
	if len(base) > 190 {
		base = base[:190]
	}
	return base + "-" + w.Hash()[:8] + "-" + suffix
}

// OwnerOf is the workload an application pool was carved for, from its owner annotation;
// false for any other pool.
func OwnerOf(pool *v1.IPPool) (Workload, bool) {
	parts := strings.SplitN(pool.Annotations[AnnotationOwner], "/", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return Workload{}, false
	}
	return Workload{Kind: parts[0], Namespace: parts[1], Name: parts[2]}, true
}
