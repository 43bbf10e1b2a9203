package rdma

import (
	"errors"
	"testing"
)

// This machine's kernel has no RDMA (CONFIG_INFINIBAND unset); the test runs for real
// wherever /sys/class/infiniband has devices.
func TestSystemModeOnRealDevices(t *testing.T) {
	devs, err := Devices()
	if errors.Is(err, ErrNoRDMA) {
		t.Skip("skipped: " + err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	mode, err := SystemMode()
	if err != nil {
		t.Fatal(err)
	}
	if mode != Shared && mode != Exclusive {
		t.Fatalf("mode %q is neither shared nor exclusive (devices %v)", mode, devs)
	}
}
