package underlay

import (
	"fmt"
	"strconv"

	"github.com/containernetworking/plugins/pkg/utils/sysctl"
)

// RPFilterLoose is reverse-path filtering that accepts a packet when its source is
// reachable through any interface. Strict filtering (1) checks the source against the
// interface the reply would leave by: without policy routing (the main table alone) that
// drops requests reaching a pod on an interface that does not hold the default route;
// with it, each interface's table and "from" rule send the reply back where the request
// came in, and strict filtering holds (TestPodWithThreeNetworksGetsEachPoolAndAnswersByEachNIC).
const RPFilterLoose = 2

// SetRPFilter sets IPv4 reverse-path filtering for ifName and for "all" in the calling
// thread's netns (the kernel applies the larger of the two, so both must be set). A
// negative value leaves the sysctls alone.
func SetRPFilter(ifName string, value int) error {
	if value < 0 {
		return nil
	}
	for _, dev := range []string{"all", ifName} {
		key := fmt.Sprintf("net/ipv4/conf/%s/rp_filter", dev)
		if _, err := sysctl.Sysctl(key, strconv.Itoa(value)); err != nil {
			return fmt.Errorf("setting %s=%d: %w", key, value, err)
		}
	}
	return nil
}
