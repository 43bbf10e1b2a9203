package controller

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/underpool/underpool/api/v1"
)

func pool(name, subnet string, ips ...string) v1.IPPool {
	return v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.IPPoolSpec{Subnet: subnet, IPs: ips}}
}
