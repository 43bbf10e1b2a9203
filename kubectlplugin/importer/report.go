package importer

import "sort"

// Report is what an import did, or would do with DryRun.
type Report struct {
	Source  string   `json:"source"`
	DryRun  bool     `json:"dryRun"`
	Changes []Change `json:"changes"`
	// Skipped are peer addresses not imported, with why (the pod is gone, mostly).
	Skipped []Skip `json:"skipped"`
	// Notes are what the translation could not carry over.
	Notes []string `json:"notes,omitempty"`
}

// The actions of a Change.
const (
	ActionCreate    = "create"
	ActionUnchanged = "unchanged"
	ActionMark      = "mark" // an existing pool's allocation state gains addresses (or an earlier import's pool is finished)
)

// Change is one underpool object created, left as it is, or whose allocation state is extended.
type Change struct {
	Action string `json:"action"` // ActionCreate, ActionUnchanged or ActionMark
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	From   string `json:"from,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Skip is one peer address that is not imported.
type Skip struct {
	Address string `json:"address"`
	From    string `json:"from"`
	Pod     string `json:"pod,omitempty"`
	Reason  string `json:"reason"`
}

func (r *Report) change(action, kind, name, from, detail string) {
	r.Changes = append(r.Changes, Change{Action: action, Kind: kind, Name: name, From: from, Detail: detail})
}

// inWriteOrder sorts the changes in the order apply writes their kinds.
func (r *Report) inWriteOrder() {
	rank := map[string]int{"Subnet": 0, "ReservedIP": 1, "IPPool": 2, "Endpoint": 3}
	sort.SliceStable(r.Changes, func(i, j int) bool { return rank[r.Changes[i].Kind] < rank[r.Changes[j].Kind] })
}
