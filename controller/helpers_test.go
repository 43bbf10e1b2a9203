package controller

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/underpool/underpool/api/v1"
)

// testMetrics are the controller's metrics on a registry of the test's own.
func testMetrics(t *testing.T) *Metrics {
	t.Helper()
	return NewMetrics(prometheus.NewRegistry(), nil)
}

func pool(name, subnet string, ips ...string) v1.IPPool {
	return v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.IPPoolSpec{Subnet: subnet, IPs: ips}}
}
