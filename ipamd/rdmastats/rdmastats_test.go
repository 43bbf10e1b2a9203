package rdmastats

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeSource struct {
	ports []Port
	err   error
}

func (f fakeSource) Ports() ([]Port, error) { return f.ports, f.err }

// The collector turns port counters into bytes, packets and errors, and passes every
// hardware counter through by name; a failed read counts and exports nothing else.
func TestCollectorExportsPortCounters(t *testing.T) {
	src := fakeSource{ports: []Port{{Device: "mlx5_0", Port: 1,
		Counters: map[string]uint64{"port_rcv_data": 100, "port_xmit_data": 50, "port_rcv_packets": 7, "port_xmit_packets": 5,
			"port_rcv_errors": 2, "port_xmit_discards": 1, "unicast_rcv_packets": 7},
		HW: map[string]uint64{"out_of_sequence": 3, "rx_write_requests": 11}}}}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(src))
	want := `
# HELP underpool_rdma_port_rx_bytes_total Bytes received on the RDMA port (port_rcv_data x 4).
# TYPE underpool_rdma_port_rx_bytes_total counter
underpool_rdma_port_rx_bytes_total{device="mlx5_0",port="1"} 400
# HELP underpool_rdma_port_tx_bytes_total Bytes sent on the RDMA port (port_xmit_data x 4).
# TYPE underpool_rdma_port_tx_bytes_total counter
underpool_rdma_port_tx_bytes_total{device="mlx5_0",port="1"} 200
# HELP underpool_rdma_port_rx_packets_total Packets received on the RDMA port (port_rcv_packets).
# TYPE underpool_rdma_port_rx_packets_total counter
underpool_rdma_port_rx_packets_total{device="mlx5_0",port="1"} 7
# HELP underpool_rdma_port_tx_packets_total Packets sent on the RDMA port (port_xmit_packets).
# TYPE underpool_rdma_port_tx_packets_total counter
underpool_rdma_port_tx_packets_total{device="mlx5_0",port="1"} 5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "underpool_rdma_port_rx_bytes_total", "underpool_rdma_port_tx_bytes_total",
		"underpool_rdma_port_rx_packets_total", "underpool_rdma_port_tx_packets_total"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		metric, counter string
		want            float64
	}{
		{"underpool_rdma_port_errors_total", "port_rcv_errors", 2},
		{"underpool_rdma_port_errors_total", "port_xmit_discards", 1},
		{"underpool_rdma_port_hw_counter_total", "out_of_sequence", 3},
		{"underpool_rdma_port_hw_counter_total", "rx_write_requests", 11},
	} {
		if got := valueOf(t, reg, c.metric, c.counter); got != c.want {
			t.Errorf("%s{counter=%q} = %v, want %v", c.metric, c.counter, got, c.want)
		}
	}
	if got := valueOf(t, reg, "underpool_rdma_port_errors_total", "unicast_rcv_packets"); got != -1 {
		t.Errorf("unicast_rcv_packets is no error counter, exported as one: %v", got)
	}

	broken := prometheus.NewPedanticRegistry()
	broken.MustRegister(NewCollector(fakeSource{err: errors.New("boom")}))
	if n, err := testutil.GatherAndCount(broken); err != nil || n != 1 {
		t.Fatalf("a failed read exported %d series (%v), want only the error counter", n, err)
	}
	if got := valueOf(t, broken, "underpool_rdma_scrape_errors_total", ""); got != 2 {
		t.Fatalf("scrape errors after two scrapes = %v, want 2", got)
	}
}

func valueOf(t *testing.T, reg *prometheus.Registry, name, counter string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := counter == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "counter" && l.GetValue() == counter {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// The sysfs source reads the kernel's layout: devices, numbered ports, counters and
// hw_counters of one number each; unreadable or non-numeric files are left out.
func TestSysfsReadsTheKernelLayout(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("mlx5_1/ports/1/counters/port_rcv_data", "1234\n")
	write("mlx5_1/ports/1/counters/port_xmit_packets", "9\n")
	write("mlx5_1/ports/1/counters/garbage", "N/A\n")
	write("mlx5_1/ports/1/hw_counters/out_of_buffer", "4\n")
	write("mlx5_1/ports/2/counters/port_rcv_data", "1\n")
	write("mlx5_1/ports/lid/ignored", "0\n")
	ports, err := Sysfs{Root: root}.Ports()
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 2 || ports[0].Device != "mlx5_1" || ports[0].Port != 1 || ports[1].Port != 2 {
		t.Fatalf("ports = %+v", ports)
	}
	if c := ports[0].Counters; c["port_rcv_data"] != 1234 || c["port_xmit_packets"] != 9 || len(c) != 2 {
		t.Fatalf("counters = %v", c)
	}
	if hw := ports[0].HW; hw["out_of_buffer"] != 4 {
		t.Fatalf("hw_counters = %v", hw)
	}
	if ports, err := (Sysfs{Root: filepath.Join(root, "absent")}).Ports(); err != nil || len(ports) != 0 {
		t.Fatalf("a node without RDMA devices: %v %v", ports, err)
	}
}

// On a host with RDMA devices the real sysfs tree must read; this one has none (no RDMA
// hardware or soft-RoCE in the test environment), so the test says so and skips.
func TestSysfsReadsRealDevices(t *testing.T) {
	ports, err := Sysfs{Root: DefaultRoot}.Ports()
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) == 0 {
		t.Skipf("no RDMA devices under %s (no RDMA hardware or rxe link here): the real-device path is untested on this host", DefaultRoot)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(Sysfs{Root: DefaultRoot}))
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}
