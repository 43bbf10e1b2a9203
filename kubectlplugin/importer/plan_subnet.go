package importer

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// subnets creates each Subnet, or leaves an identical one alone.
func (pl *planner) subnets() error {
	for _, s := range pl.st.subnets {
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
