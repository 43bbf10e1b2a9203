package importer

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/core/allocator"
)

// reservedIPs creates each ReservedIP, or leaves one of the same addresses alone.
func (pl *planner) reservedIPs() error {
	for _, r := range pl.st.reserved {
		if err := validReserved(r); err != nil {
			return err
		}
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

// validReserved refuses entries the API would refuse (a range reversed or of two
// families, a zone, what is no address), naming each by index, before anything is
// written: found only at its create, it would leave the objects before it written.
func validReserved(r peerReserved) error {
	_, errs := allocator.ParseReservations("spec.ips", r.ips)
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("%s cannot become ReservedIP %s: %s: fix the peer object first", r.from, r.name, strings.Join(msgs, "; "))
}
