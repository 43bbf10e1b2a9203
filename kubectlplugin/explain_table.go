package kubectlplugin

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// outcome sums up an interface: what it holds, or the exact reason it holds nothing.
func outcome(x *InterfaceExplanation, pod *corev1.Pod) string {
	var live, kept []string
	for _, h := range x.Holds {
		ips := make([]string, 0, len(h.IPs))
		for _, ip := range h.IPs {
			ips = append(ips, ip.Address+" ("+ip.Pool+")")
		}
		switch {
		case h.ThisPod && h.Detached == nil:
			live = append(live, fmt.Sprintf("holds %s on node %s since %s (container %s)", strings.Join(ips, ", "), h.Node, h.Created.UTC().Format(time.RFC3339), shortID(h.ContainerID)))
		default:
			kept = append(kept, strings.Join(ips, ", "))
		}
	}
	switch {
	case len(live) > 0:
		return strings.Join(live, "; ")
	case len(kept) > 0:
		return "no live attachment; " + strings.Join(kept, ", ") + " kept for this pod name (an earlier sandbox or StatefulSet predecessor): the next ADD takes them over"
	case x.Error != "":
		return "no address: " + x.Error
	}
	var blocked, chosen []string
	for _, f := range x.Families {
		if f.Chosen != "" {
			chosen = append(chosen, f.Chosen)
			continue
		}
		var why []string
		for _, p := range f.Pools {
			why = append(why, p.Pool+": "+p.Reason)
		}
		blocked = append(blocked, fmt.Sprintf("no %s pool can serve it [%s]", f.Family, strings.Join(why, "; ")))
	}
	switch {
	case len(blocked) > 0:
		return "no address: " + strings.Join(blocked, "; ")
	case pod.Spec.NodeName == "":
		return "no address yet: the pod is not scheduled; ipamd would allocate from " + strings.Join(chosen, " and ")
	}
	return "no address: pool selection is fine (ipamd would allocate from " + strings.Join(chosen, " and ") +
		"); the sandbox has not been set up yet, or its ADD failed for another reason: see the last sandbox failure and ipamd's log on " + pod.Spec.NodeName
}

// lastSandboxFailure returns the pod's newest FailedCreatePodSandBox event.
func lastSandboxFailure(ctx context.Context, c client.Reader, pod *corev1.Pod) (*PodEvent, error) {
	var events corev1.EventList
	if err := c.List(ctx, &events, client.InNamespace(pod.Namespace),
		client.MatchingFields{"involvedObject.name": pod.Name, "involvedObject.kind": "Pod"}); err != nil {
		return nil, fmt.Errorf("listing events of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	var last *PodEvent
	for _, e := range events.Items {
		if e.Reason != "FailedCreatePodSandBox" || (e.InvolvedObject.UID != "" && e.InvolvedObject.UID != pod.UID) {
			continue
		}
		when := e.LastTimestamp.Time
		if when.IsZero() {
			when = e.EventTime.Time
		}
		if when.IsZero() {
			when = e.CreationTimestamp.Time
		}
		if last == nil || when.After(last.Last) {
			last = &PodEvent{Reason: e.Reason, Message: e.Message, Count: max(e.Count, 1), Last: when}
		}
	}
	return last, nil
}

func explainTable(w io.Writer, ex *Explanation, now time.Time) {
	fmt.Fprintf(w, "Pod:\t%s (UID %s, %s)\n", ex.Pod, ex.UID, orDash(ex.Phase))
	fmt.Fprintf(w, "Node:\t%s\n", orDash(ex.Node))
	for _, n := range ex.Notes {
		fmt.Fprintf(w, "Note:\t%s\n", n)
	}
	if e := ex.LastSandboxFailure; e != nil {
		fmt.Fprintf(w, "Last sandbox failure:\t%s ago (x%d): %s\n", age(e.Last, now), e.Count, e.Message)
	}
	for _, x := range ex.Interfaces {
		fmt.Fprintln(w)
		head := "Interface " + x.Interface
		if x.NAD != "" {
			head += "\tNAD " + x.NAD
		}
		if x.Network != "" {
			head += "\tnetwork " + x.Network
		}
		fmt.Fprintln(w, head)
		if len(x.Chain) > 0 {
			fmt.Fprintln(w, "  Selection chain (first rule that names pools wins):")
			for i, s := range x.Chain {
				row(w, fmt.Sprintf("    %d. %s", i+1, s.Rule), s.Verdict, s.Detail)
			}
		}
		for _, f := range x.Families {
			title := "  " + f.Family + " pools in order"
			if f.Requested != "" {
				title += " (multus requests " + f.Requested + ")"
			}
			fmt.Fprintln(w, title+":")
			row(w, "    POOL", "VERDICT", "FREE", "WHY")
			for _, p := range f.Pools {
				row(w, "    "+p.Pool, p.Verdict, count(p.Free), p.Reason)
			}
		}
		if len(x.Holds) > 0 {
			fmt.Fprintln(w, "  Endpoint records:")
			row(w, "    CONTAINER", "ADDRESSES", "NODE", "CREATED", "STATE")
			for _, h := range x.Holds {
				var ips []string
				for _, ip := range h.IPs {
					ips = append(ips, ip.Address+" ("+ip.Pool+")")
				}
				state := "live"
				switch {
				case h.Detached != nil:
					state = "detached " + age(*h.Detached, now) + " ago (kept for the next pod of this name)"
				case !h.ThisPod:
					state = "made for an earlier pod of this name"
				}
				row(w, "    "+shortID(h.ContainerID), strings.Join(ips, ", "), h.Node, age(h.Created, now)+" ago", state)
			}
		}
		fmt.Fprintf(w, "  Outcome:\t%s\n", x.Outcome)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
