package routes

import (
	"encoding/json"
	"fmt"
)

// Annotation is the pod annotation carrying pod-level routes, the highest route level.
const Annotation = "ipam.underpool.io/routes"

// annotationEntry is one route of the annotation. Interface is optional: without it the
// route applies to every underpool interface of the pod.
type annotationEntry struct {
	Dst       string `json:"dst"`
	Gw        string `json:"gw,omitempty"`
	Interface string `json:"interface,omitempty"`
}

// ParseAnnotation reads the routes annotation value, a JSON list such as
// [{"dst":"10.0.0.0/8","gw":"10.250.1.1","interface":"net1"}], and returns the routes for
// ifName. Errors name the annotation and the bad entry.
func ParseAnnotation(value, ifName string) ([]Route, error) {
	if value == "" {
		return nil, nil
	}
	var entries []annotationEntry
	if err := json.Unmarshal([]byte(value), &entries); err != nil {
		return nil, fmt.Errorf("annotation %s is not a JSON list of {\"dst\",\"gw\",\"interface\"}: %v", Annotation, err)
	}
	var out []Route
	for i, e := range entries {
		r, err := Parse(e.Dst, e.Gw, fmt.Sprintf("annotation %s entry %d", Annotation, i))
		if err != nil {
			return nil, err
		}
		if e.Interface == "" || e.Interface == ifName {
			out = append(out, r)
		}
	}
	return out, nil
}
