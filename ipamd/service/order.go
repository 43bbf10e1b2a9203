package service

import (
	"fmt"
	"sync"

	"github.com/underpool/underpool/rpc"
)

// sandboxOrder keeps a late ADD from taking what a later one recorded. ipamd works on
// a request after its plugin gave up waiting (requests are detached from the
// connection), and the runtime has by then torn that sandbox down and made the next: an
// ADD that arrived before the pod's current attachment was recorded is for a sandbox
// that is gone. Were it served, it would take the live sandbox's record over (or record
// a newer-looking attachment that recycling then takes for the live one's successor),
// and CNI GC, listing only the live sandbox, would free the address under the pod.
// Every ADD of one pod reaches the same ipamd, so the order of arrival in this process
// is the order of the sandboxes; a late ADD never outlives its process.
type sandboxOrder struct {
	mu       sync.Mutex
	arrived  uint64
	inFlight int
	// recorded holds, per pod attachment, the arrival of the ADD that recorded it last;
	// only ADDs still in flight can be late, so it is emptied whenever none is
	recorded map[string]uint64
}

// arrive numbers an ADD; leave must follow when it is answered.
func (o *sandboxOrder) arrive() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.arrived++
	o.inFlight++
	return o.arrived
}

func (o *sandboxOrder) leave() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.inFlight--; o.inFlight == 0 {
		clear(o.recorded)
	}
}

// overtaken reports whether an ADD that arrived after arrival has recorded the attachment.
func (o *sandboxOrder) overtaken(att string, arrival uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.recorded[att] > arrival
}

// record notes that the ADD of arrival recorded the attachment.
func (o *sandboxOrder) record(att string, arrival uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.recorded == nil {
		o.recorded = map[string]uint64{}
	}
	o.recorded[att] = max(o.recorded[att], arrival)
}

// attachmentKey names the pod's attachment on the request's interface and network.
func (a attachment) attachmentKey() string {
	return fmt.Sprintf("%s/%s/%s", a.key, a.req.IfName, a.req.Network)
}

// notOvertaken refuses an ADD that an ADD arriving after it has overtaken: that one
// recorded the pod's attachment on this interface, so this sandbox is gone.
func (s *Service) notOvertaken(a attachment) error {
	if !s.order.overtaken(a.attachmentKey(), a.arrival) {
		return nil
	}
	return &rpc.Error{Code: rpc.CodeBadRequest, Field: "containerID",
		Message: fmt.Sprintf("pod %s has recorded a newer sandbox's attachment on %s since this ADD for container %s arrived: that sandbox is gone (its plugin gave up waiting); refusing to take anything for it",
			a.key, a.req.IfName, a.req.ContainerID)}
}
