package kubectlplugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadutils "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/utils"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// attachment is one interface multus would attach for the pod, from its networks annotation.
type attachment struct {
	ifName    string
	nad       string // namespace/name; "" when the interface is not from the annotation
	network   string // the CNI network name (the NAD config's "name"), as ipamd sees it
	pools     v1.PoolNames
	requested []netip.Addr // multus "ips"
	underpool bool         // the network's config uses underpool for addresses
	problem   string       // why ipamd would not be asked, or could not be
}

// podAttachments reads the pod's k8s.v1.cni.cncf.io/networks annotation the way multus
// does (the NAD client library's parser; unnamed interfaces are net1, net2, ... in order)
// and each NAD's config.
func podAttachments(ctx context.Context, c client.Reader, pod *corev1.Pod) ([]attachment, error) {
	text := pod.Annotations[nadv1.NetworkAttachmentAnnot]
	if text == "" {
		return nil, nil
	}
	elems, err := nadutils.ParseNetworkAnnotation(text, pod.Namespace)
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s annotation %s: %v: fix the annotation (multus cannot attach the pod either)", pod.Namespace, pod.Name, nadv1.NetworkAttachmentAnnot, err)
	}
	var out []attachment
	for i, e := range elems {
		a := attachment{ifName: e.InterfaceRequest, nad: e.Namespace + "/" + e.Name, network: e.Name}
		if a.ifName == "" {
			a.ifName = fmt.Sprintf("net%d", i+1)
		}
		for _, ip := range e.IPRequest {
			if p, err := parseIP(ip); err == nil {
				a.requested = append(a.requested, p)
			}
		}
		nad := &nadv1.NetworkAttachmentDefinition{}
		err := c.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: e.Name}, nad)
		switch {
		case apierrors.IsNotFound(err):
			a.problem = fmt.Sprintf("NetworkAttachmentDefinition %s not found: create it or fix the pod's %s annotation (multus fails the sandbox)", a.nad, nadv1.NetworkAttachmentAnnot)
		case err != nil:
			return nil, fmt.Errorf("reading NetworkAttachmentDefinition %s: %w", a.nad, err)
		default:
			readNADConfig(nad, &a)
		}
		out = append(out, a)
	}
	return out, nil
}

// cniConfig is what explain needs of a network config or conflist.
type cniConfig struct {
	Name    string      `json:"name"`
	Type    string      `json:"type"`
	IPAM    *ipamConfig `json:"ipam"`
	Plugins []struct {
		Type string      `json:"type"`
		IPAM *ipamConfig `json:"ipam"`
	} `json:"plugins"`
}

type ipamConfig struct {
	Type      string   `json:"type"`
	IPv4Pools []string `json:"ipv4Pools"`
	IPv6Pools []string `json:"ipv6Pools"`
}

// readNADConfig finds the underpool plugin (type underpool, or ipam type underpool-ipam) in
// the NAD's config and its ipam pools.
func readNADConfig(nad *nadv1.NetworkAttachmentDefinition, a *attachment) {
	if nad.Spec.Config == "" {
		a.problem = fmt.Sprintf("NetworkAttachmentDefinition %s has no spec.config (a device-plugin-only NAD?): underpool is not asked for its addresses", a.nad)
		return
	}
	var conf cniConfig
	if err := json.Unmarshal([]byte(nad.Spec.Config), &conf); err != nil {
		a.problem = fmt.Sprintf("NetworkAttachmentDefinition %s spec.config is not JSON: %v: fix it", a.nad, err)
		return
	}
	if conf.Name != "" {
		a.network = conf.Name
	}
	plugins := []struct {
		Type string
		IPAM *ipamConfig
	}{{conf.Type, conf.IPAM}}
	for _, p := range conf.Plugins {
		plugins = append(plugins, struct {
			Type string
			IPAM *ipamConfig
		}{p.Type, p.IPAM})
	}
	for _, p := range plugins {
		if p.Type == "underpool" || (p.IPAM != nil && p.IPAM.Type == "underpool-ipam") {
			a.underpool = true
			if p.IPAM != nil {
				a.pools = v1.PoolNames{IPv4: p.IPAM.IPv4Pools, IPv6: p.IPAM.IPv6Pools}
			}
			return
		}
	}
	a.problem = fmt.Sprintf("NetworkAttachmentDefinition %s does not use underpool (no plugin of type underpool, no ipam of type underpool-ipam): another IPAM assigns this interface's addresses", a.nad)
}
