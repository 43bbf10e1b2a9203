package importer

import (
	"fmt"
	"net/netip"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// subnets creates each Subnet, or leaves an identical one alone.
func (pl *planner) subnets() error {
	for _, s := range pl.st.subnets {
		if err := validSubnet(s); err != nil {
			return err
		}
		cur := &v1.Subnet{}
		err := pl.c.Get(pl.ctx, client.ObjectKey{Name: s.name}, cur)
		switch {
		case err == nil && equality.Semantic.DeepEqual(cur.Spec, s.spec):
			pl.p.report.change(ActionUnchanged, "Subnet", s.name, s.from, s.spec.Subnet)
		case err == nil:
			return fmt.Errorf("%s would become Subnet %s, but Subnet %s exists with another spec: delete it, or pass --prefix to import under other names", s.from, s.name, s.name)
		case apierrors.IsNotFound(err):
			pl.p.subnets = append(pl.p.subnets, &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: s.name, Labels: importedLabel()}, Spec: s.spec})
			pl.p.report.change(ActionCreate, "Subnet", s.name, s.from, s.spec.Subnet)
		default:
			return fmt.Errorf("reading Subnet %s: %w", s.name, err)
		}
	}
	return nil
}

// validSubnet refuses a Subnet spec the API would refuse (ValidateSubnet's rule: the
// addresses read as a pool's do), before anything is written: found only at its create,
// it would leave the Subnets before it written.
func validSubnet(s peerSubnet) error {
	if _, err := netip.ParsePrefix(s.spec.Subnet); err != nil {
		return fmt.Errorf("%s cannot become Subnet %s: spec.subnet %q is not a CIDR: %v: fix the peer object first", s.from, s.name, s.spec.Subnet, err)
	}
	_, err := allocator.NewPool(s.name, &v1.IPPoolSpec{Subnet: s.spec.Subnet, IPs: s.spec.IPs,
		ExcludeIPs: s.spec.ExcludeIPs, Gateway: s.spec.Gateway, Routes: s.spec.Routes})
	if err != nil {
		return fmt.Errorf("%s cannot become Subnet %s: %v: fix the peer object first", s.from, s.name, err)
	}
	return nil
}
