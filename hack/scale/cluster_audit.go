package main

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// apiserver_request_total has no user-agent label, so requests by client come from the
// audit log: one event per request at level Metadata (RequestReceived is left out; a long
// request such as a watch also logs ResponseStarted, counted once by its auditID).
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`

const ipamdUserAgent = "underpool-ipamd/"

// auditEvent is the part of an audit.k8s.io/v1 Event the counts need.
type auditEvent struct {
	AuditID   string `json:"auditID"`
	Verb      string `json:"verb"`
	UserAgent string `json:"userAgent"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Received time.Time `json:"requestReceivedTimestamp"`
	// Stage is the event's stage (ResponseStarted, ResponseComplete), StageAt when it was reached.
	Stage   string    `json:"stage"`
	StageAt time.Time `json:"stageTimestamp"`
}

// requestCounts are the requests received in a window, by client and by verb+resource.
type requestCounts struct {
	// ByClient: ipamds are one client "underpool-ipamd/*"; others by user agent up to
	// the first space (client-go appends the platform and commit).
	ByClient map[string]int `json:"byClient"`
	// IpamdByVerbResource counts all ipamds' requests by "verb resource[/subresource]".
	IpamdByVerbResource map[string]int `json:"ipamdByVerbResource"`
	// IpamdTotal and IpamdThrottled (429: the apiserver's priority and fairness refused it).
	IpamdTotal     int `json:"ipamdTotal"`
	IpamdThrottled int `json:"ipamdThrottled"`
	// PerIpamd is each ipamd's count, by node.
	PerIpamd map[string]int `json:"perIpamd"`
}

// auditOffset is where the audit log ends now: a window's events are after it.
func auditOffset(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// countRequests reads the audit log from offset and counts the requests received in
// [from, to).
func countRequests(path string, offset int64, from, to time.Time) (requestCounts, error) {
	rc := requestCounts{ByClient: map[string]int{}, IpamdByVerbResource: map[string]int{}, PerIpamd: map[string]int{}}
	seen := map[string]bool{}
	err := readAudit(path, offset, func(ev *auditEvent) {
		if !seen[ev.AuditID] && !ev.Received.Before(from) && ev.Received.Before(to) {
			seen[ev.AuditID] = true
			rc.add(ev)
		}
	})
	return rc, err
}

// readAudit calls fn with each event of the audit log from offset on, in the log's order.
func readAudit(path string, offset int64, fn func(*auditEvent)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			var ev auditEvent
			if json.Unmarshal(line, &ev) == nil {
				fn(&ev)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (rc *requestCounts) add(ev *auditEvent) {
	ua, _, _ := strings.Cut(ev.UserAgent, " ")
	node, isIpamd := strings.CutPrefix(ua, ipamdUserAgent)
	if !isIpamd {
		rc.ByClient[ua]++
		return
	}
	rc.ByClient[ipamdUserAgent+"*"]++
	rc.IpamdTotal++
	rc.PerIpamd[node]++
	res := "(no object)"
	if ev.ObjectRef != nil {
		res = ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			res += "/" + ev.ObjectRef.Subresource
		}
	}
	rc.IpamdByVerbResource[ev.Verb+" "+res]++
	if ev.ResponseStatus != nil && ev.ResponseStatus.Code == 429 {
		rc.IpamdThrottled++
	}
}

// sortedKeys orders a count map by count, largest first.
func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}
