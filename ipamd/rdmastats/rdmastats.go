// Package rdmastats exports per-port RDMA counters as Prometheus metrics: the port
// counters (bytes, packets, errors) and the hardware counters `rdma statistic show`
// prints, the set Spiderpool's RDMA exporter offers.
//
// They are read from sysfs (/sys/class/infiniband/<dev>/ports/<n>/counters and
// hw_counters), not netlink: ipamd must not link netlink (cmd/ipamd/deps_test.go), and
// hw_counters holds the very values the kernel's nldev STAT_GET (netlink.RdmaStatistic)
// returns. Reading happens at scrape time through the Source interface, so tests use a
// fake and a node without RDMA devices exports nothing.
package rdmastats

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Port is one RDMA device port and its counters, by the kernel's file names.
type Port struct {
	Device   string
	Port     int
	Counters map[string]uint64 // counters/*: port_rcv_data, port_xmit_packets, ...
	HW       map[string]uint64 // hw_counters/*: out_of_sequence, rx_write_requests, ...
}

// Source lists the ports and their counters now.
type Source interface {
	Ports() ([]Port, error)
}

// Sysfs reads the counters under Root (normally /sys/class/infiniband).
type Sysfs struct{ Root string }

// DefaultRoot is where the kernel shows RDMA devices.
const DefaultRoot = "/sys/class/infiniband"

// Ports reads every device's ports; a device or port without counters has empty maps.
func (s Sysfs) Ports() ([]Port, error) {
	devs, err := os.ReadDir(s.Root)
	if os.IsNotExist(err) {
		return nil, nil // no RDMA devices on this node
	}
	if err != nil {
		return nil, err
	}
	var out []Port
	for _, dev := range devs {
		portsDir := filepath.Join(s.Root, dev.Name(), "ports")
		ports, err := os.ReadDir(portsDir)
		if err != nil {
			continue
		}
		for _, p := range ports {
			n, err := strconv.Atoi(p.Name())
			if err != nil {
				continue
			}
			out = append(out, Port{Device: dev.Name(), Port: n,
				Counters: readCounters(filepath.Join(portsDir, p.Name(), "counters")),
				HW:       readCounters(filepath.Join(portsDir, p.Name(), "hw_counters"))})
		}
	}
	return out, nil
}

// readCounters reads a directory of one-number files; unreadable ones are left out (some
// counters are not implemented by every driver and fail to read).
func readCounters(dir string) map[string]uint64 {
	out := map[string]uint64{}
	files, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, f := range files {
		if f.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			continue
		}
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			out[f.Name()] = v
		}
	}
	return out
}

// The port counters named in their own metric; port_rcv_data and port_xmit_data count
// 4-octet words (InfiniBand PortCounters), so bytes are four times the value.
var (
	rxBytes   = prometheus.NewDesc("underpool_rdma_port_rx_bytes_total", "Bytes received on the RDMA port (port_rcv_data x 4).", []string{"device", "port"}, nil)
	txBytes   = prometheus.NewDesc("underpool_rdma_port_tx_bytes_total", "Bytes sent on the RDMA port (port_xmit_data x 4).", []string{"device", "port"}, nil)
	rxPackets = prometheus.NewDesc("underpool_rdma_port_rx_packets_total", "Packets received on the RDMA port (port_rcv_packets).", []string{"device", "port"}, nil)
	txPackets = prometheus.NewDesc("underpool_rdma_port_tx_packets_total", "Packets sent on the RDMA port (port_xmit_packets).", []string{"device", "port"}, nil)
	errs      = prometheus.NewDesc("underpool_rdma_port_errors_total", "Error and discard counters of the RDMA port, by counter (port_rcv_errors, port_xmit_discards, symbol_error, link_downed, ...).", []string{"device", "port", "counter"}, nil)
	hw        = prometheus.NewDesc("underpool_rdma_port_hw_counter_total", "Hardware counters of the RDMA port, as `rdma statistic show` prints them (out_of_sequence, rx_write_requests, np_cnp_sent, ...), by counter.", []string{"device", "port", "counter"}, nil)
)

// errorCounters are the counters/ files that count errors or discards.
var errorCounters = map[string]bool{
	"port_rcv_errors": true, "port_xmit_discards": true, "symbol_error": true, "link_downed": true,
	"link_error_recovery": true, "port_rcv_remote_physical_errors": true, "port_rcv_switch_relay_errors": true,
	"port_rcv_constraint_errors": true, "port_xmit_constraint_errors": true, "local_link_integrity_errors": true,
	"excessive_buffer_overrun_errors": true, "VL15_dropped": true, "port_xmit_wait": true,
}

// Collector exports a Source's counters at every scrape.
type Collector struct {
	src    Source
	failed prometheus.Counter
}

// NewCollector reads src at every scrape.
func NewCollector(src Source) *Collector {
	return &Collector{src: src, failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "underpool_rdma_scrape_errors_total",
		Help: "Failed reads of the RDMA counters."})}
}

func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{rxBytes, txBytes, rxPackets, txPackets, errs, hw, c.failed.Desc()} {
		ch <- d
	}
}

func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ports, err := c.src.Ports()
	if err != nil {
		c.failed.Inc()
	}
	ch <- c.failed
	for _, p := range ports {
		port := strconv.Itoa(p.Port)
		counter := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append([]string{p.Device, port}, labels...)...)
		}
		if v, ok := p.Counters["port_rcv_data"]; ok {
			counter(rxBytes, float64(v)*4)
		}
		if v, ok := p.Counters["port_xmit_data"]; ok {
			counter(txBytes, float64(v)*4)
		}
		if v, ok := p.Counters["port_rcv_packets"]; ok {
			counter(rxPackets, float64(v))
		}
		if v, ok := p.Counters["port_xmit_packets"]; ok {
			counter(txPackets, float64(v))
		}
		for _, name := range sorted(p.Counters) {
			if errorCounters[name] {
				counter(errs, float64(p.Counters[name]), name)
			}
		}
		for _, name := range sorted(p.HW) {
			counter(hw, float64(p.HW[name]), name)
		}
	}
}

func sorted(m map[string]uint64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
