package harness

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
)

// Ping sends count echo requests from inside ns to ip (IPv4 or IPv6), 200 ms
// apart with a one second timeout each, and succeeds if any reply arrives: a
// first probe lost to neighbour resolution must not fail a test.
func Ping(ns *NetNS, ip string, count int) error {
	return ping([]string{"ip", "netns", "exec", ns.Name()}, ip, count)
}

// PingFrom is Ping for a namespace known only by path (e.g. a CNI_NETNS).
func PingFrom(nsPath, ip string, count int) error {
	return ping([]string{"nsenter", "--net=" + nsPath, "--"}, ip, count)
}

func ping(prefix []string, ip string, count int) error {
	addr := net.ParseIP(ip)
	if addr == nil {
		return fmt.Errorf("ping: %q is not an IP address", ip)
	}
	family := "-4"
	if addr.To4() == nil {
		family = "-6"
	}
	args := append(prefix, "ping", family, "-c", strconv.Itoa(count), "-i", "0.2", "-W", "1", ip)
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
