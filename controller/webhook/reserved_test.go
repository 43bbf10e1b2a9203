package webhook

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
)

func reservedIP(name string, ips ...string) *v1.ReservedIP {
	return &v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1}, Spec: v1.ReservedIPSpec{IPs: ips}}
}

// The webhook refuses a ReservedIP with any entry that is not a plain address or an
// ordered range of one family, naming the entry's index and the fix; good lists pass.
func TestReservedIPWebhookNamesEachBadEntryAndItsFix(t *testing.T) {
	for _, c := range []struct {
		name string
		ips  []string
		want string // "" admitted
	}{
		{"addresses and ranges of both families", []string{"10.0.0.10", "10.0.0.20-10.0.0.30", "fd00::1-fd00::9"}, ""},
		{"a reversed range", []string{"10.0.0.10", "10.0.0.30-10.0.0.20"}, "spec.ips[1]: range 10.0.0.30-10.0.0.20 is reversed: write 10.0.0.20-10.0.0.30"},
		{"a reversed IPv6 range (CEL cannot order IPv6)", []string{"fd00::30-fd00::20"}, "spec.ips[0]: range fd00::30-fd00::20 is reversed: write fd00::20-fd00::30"},
		{"mixed families", []string{"10.0.0.1-fd00::1"}, "spec.ips[0]: range 10.0.0.1-fd00::1 mixes IPv4 and IPv6"},
		{"an IPv4-mapped address", []string{"::ffff:10.0.0.10"}, "spec.ips[0]: ::ffff:10.0.0.10 is an IPv4-mapped IPv6 address, which reserves the IPv4 address: write 10.0.0.10"},
		{"not an address", []string{"10.0.0.1", "10.0.0.1/24"}, `spec.ips[1]: "10.0.0.1/24" is neither an IP address nor a range`},
		{"every bad entry at once", []string{"x", "10.0.0.9", "10.0.0.2-10.0.0.1"}, "spec.ips[0]: \"x\" is neither an IP address nor a range: write an address (10.250.1.10) or an inclusive range (10.250.1.10-10.250.1.20); spec.ips[2]: range 10.0.0.2-10.0.0.1 is reversed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := reservedValidator{metrics: NewMetrics(nil)}.ValidateCreate(context.Background(), reservedIP("r", c.ips...))
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(strings.TrimPrefix(err.Error(), "r: "), "spec.ips[") {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

// An object that got in before the webhook checked ReservedIPs can still have its
// metadata edited (or be deleted); a spec change must fix it.
func TestReservedIPWebhookChecksOnlySpecChanges(t *testing.T) {
	old := reservedIP("r", "10.0.0.10", "10.0.0.30-10.0.0.20")
	labelled := old.DeepCopy()
	labelled.Labels = map[string]string{"team": "net"}
	if _, err := (reservedValidator{metrics: NewMetrics(nil)}).ValidateUpdate(context.Background(), old, labelled); err != nil {
		t.Fatalf("a label edit of an old bad object: %v", err)
	}
	grown := old.DeepCopy()
	grown.Spec.IPs = append(grown.Spec.IPs, "10.0.0.40")
	if _, err := (reservedValidator{metrics: NewMetrics(nil)}).ValidateUpdate(context.Background(), old, grown); err == nil || !strings.Contains(err.Error(), "spec.ips[1]") {
		t.Fatalf("a spec change keeping the bad entry: %v", err)
	}
}
