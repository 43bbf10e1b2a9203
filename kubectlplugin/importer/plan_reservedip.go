package importer

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
)

// reservedIPs creates each ReservedIP, or leaves one of the same addresses alone.
func (pl *planner) reservedIPs() error {
	for _, r := range pl.st.reserved {
		cur := &v1.ReservedIP{}
		spec := v1.ReservedIPSpec{IPs: r.ips}
		err := pl.c.Get(pl.ctx, client.ObjectKey{Name: r.name}, cur)
		switch {
		case err == nil && equality.Semantic.DeepEqual(cur.Spec, spec):
			pl.p.report.change(ActionUnchanged, "ReservedIP", r.name, r.from, strings.Join(r.ips, ","))
		case err == nil:
			return fmt.Errorf("%s would become ReservedIP %s, but ReservedIP %s exists with other addresses: delete it, or pass --prefix to import under other names", r.from, r.name, r.name)
		case apierrors.IsNotFound(err):
			pl.p.reserved = append(pl.p.reserved, &v1.ReservedIP{ObjectMeta: metav1.ObjectMeta{Name: r.name, Labels: importedLabel()}, Spec: spec})
			pl.p.report.change(ActionCreate, "ReservedIP", r.name, r.from, strings.Join(r.ips, ","))
		default:
			return fmt.Errorf("reading ReservedIP %s: %w", r.name, err)
		}
	}
	return nil
}
