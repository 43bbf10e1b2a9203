// Package examples reads the files users copy from conflist-examples/, so that tests can
// validate each one and run those whose kernel features exist on the machine.
package examples

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/yaml"

	v1 "github.com/underpool/underpool/api/v1"
	conflistexamples "github.com/underpool/underpool/conflist-examples"
	"github.com/underpool/underpool/core/nadgen"
)

// Example is one network config (a NAD's spec.config, a .conflist, or what an
// UnderlayNetwork renders), one IPPool, or one Pod that attaches networks of the examples
// through the multus annotation.
type Example struct {
	File     string
	Name     string
	Conflist []byte              // set for networks
	Network  *v1.UnderlayNetwork // set for networks written as an UnderlayNetwork
	Pool     *v1.IPPool          // set for pools
	Pod      []Network           // set for pods: the networks they ask for, in order
}

// Network is one entry of a pod's k8s.v1.cni.cncf.io/networks annotation.
type Network struct {
	Name      string `json:"name"`
	Interface string `json:"interface,omitempty"`
}

// NetworksAnnotation is multus' annotation naming a pod's extra networks.
const NetworksAnnotation = "k8s.v1.cni.cncf.io/networks"

// parseNetworks reads the annotation in both of multus' forms: a JSON list of objects,
// or comma-separated names. Interfaces left out are net1, net2, ... as multus names them.
func parseNetworks(s string) ([]Network, error) {
	var out []Network
	if strings.HasPrefix(strings.TrimSpace(s), "[") {
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			return nil, fmt.Errorf("%s: %v", NetworksAnnotation, err)
		}
	} else {
		for _, n := range strings.Split(s, ",") {
			out = append(out, Network{Name: strings.TrimSpace(n)})
		}
	}
	for i := range out {
		if out[i].Interface == "" {
			out[i].Interface = fmt.Sprintf("net%d", i+1)
		}
	}
	return out, nil
}

// Load reads every example of the folder (embedded: the VM's tests have no checkout).
func Load() ([]Example, error) {
	entries, err := conflistexamples.Files.ReadDir(".")
	if err != nil {
		return nil, err
	}
	var out []Example
	for _, e := range entries {
		data, err := conflistexamples.Files.ReadFile(e.Name())
		if err != nil {
			return nil, err
		}
		f := "conflist-examples/" + e.Name()
		switch filepath.Ext(f) {
		case ".conflist":
			out = append(out, Example{File: f, Name: filepath.Base(f), Conflist: data})
		case ".yaml":
			docs, err := fromYAML(f, data)
			if err != nil {
				return nil, err
			}
			out = append(out, docs...)
		}
	}
	return out, nil
}

func fromYAML(file string, data []byte) ([]Example, error) {
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []Example
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %v", file, err)
		}
		if doc == nil {
			continue
		}
		meta, _ := doc["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		switch doc["kind"] {
		case "NetworkAttachmentDefinition":
			spec, _ := doc["spec"].(map[string]any)
			config, _ := spec["config"].(string)
			out = append(out, Example{File: file, Name: name, Conflist: []byte(config)})
		case "UnderlayNetwork":
			ex, err := fromNetwork(file, name, doc)
			if err != nil {
				return nil, err
			}
			out = append(out, ex)
		case "IPPool":
			raw, _ := json.Marshal(doc)
			pool := &v1.IPPool{}
			if err := json.Unmarshal(raw, pool); err != nil {
				return nil, fmt.Errorf("%s: IPPool %s: %v", file, name, err)
			}
			out = append(out, Example{File: file, Name: name, Pool: pool})
		case "Pod":
			annotations, _ := meta["annotations"].(map[string]any)
			value, _ := annotations[NetworksAnnotation].(string)
			nets, err := parseNetworks(value)
			if err != nil || len(nets) == 0 {
				return nil, fmt.Errorf("%s: Pod %s: %v (want networks in %s)", file, name, err, NetworksAnnotation)
			}
			out = append(out, Example{File: file, Name: name, Pod: nets})
		default:
			return nil, fmt.Errorf("%s: unexpected kind %v", file, doc["kind"])
		}
	}
}

// Needs is what of the kernel and the node a network example needs beyond veth and macvlan.
type Needs struct {
	Ipvlan, Sriov, Vlan, Bond bool
	RDMAMode                  string // "" none, else shared or exclusive
}

// Any reports whether the example needs anything beyond veth and macvlan.
func (n Needs) Any() bool { return n.Ipvlan || n.Sriov || n.Vlan || n.Bond || n.RDMAMode != "" }

// NeedsOf reads a network example: its delegates, RDMA mode, bond, and VLAN (its own, or a
// pool's: vlanPools says which pools name one).
func NeedsOf(conflist []byte, vlanPools map[string]bool) (Needs, error) {
	var list struct {
		Plugins []struct {
			Type     string         `json:"type"`
			Delegate map[string]any `json:"delegate"`
			RDMA     struct {
				Mode string `json:"mode"`
			} `json:"rdma"`
			Vlan int            `json:"vlan"`
			Bond map[string]any `json:"bond"`
			IPAM struct {
				IPv4Pools []string `json:"ipv4Pools"`
				IPv6Pools []string `json:"ipv6Pools"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(conflist, &list); err != nil {
		return Needs{}, err
	}
	var n Needs
	for _, p := range list.Plugins {
		kind := p.Type
		if p.Delegate != nil {
			kind, _ = p.Delegate["type"].(string)
		}
		n.Ipvlan = n.Ipvlan || kind == "ipvlan"
		n.Sriov = n.Sriov || kind == "sriov"
		n.Vlan = n.Vlan || p.Vlan != 0
		for _, pool := range append(p.IPAM.IPv4Pools, p.IPAM.IPv6Pools...) {
			n.Vlan = n.Vlan || vlanPools[pool]
		}
		n.Bond = n.Bond || p.Bond != nil
		if p.RDMA.Mode != "" {
			n.RDMAMode = p.RDMA.Mode
		}
	}
	return n, nil
}

// NetworkName is a network example's name.
func NetworkName(conflist []byte) (string, error) {
	var list struct {
		Name string `json:"name"`
	}
	err := json.Unmarshal(conflist, &list)
	return list.Name, err
}

// fromNetwork reads an UnderlayNetwork strictly (a misspelt field is an error, as the
// apiserver's would be) and renders it as the controller does.
func fromNetwork(file, name string, doc map[string]any) (Example, error) {
	raw, _ := json.Marshal(doc)
	net := &v1.UnderlayNetwork{}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(net); err != nil {
		return Example{}, fmt.Errorf("%s: UnderlayNetwork %s: %v", file, name, err)
	}
	rendered, err := nadgen.Render(net)
	if err != nil {
		return Example{}, fmt.Errorf("%s: UnderlayNetwork %s: %v", file, name, err)
	}
	return Example{File: file, Name: name, Conflist: []byte(rendered.Config), Network: net}, nil
}
