package chain

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/underpool/underpool/underlay"
)

// uplinkKernel is the kernel side of the uplink (package underlay, in the node's netns);
// tests swap in a fake to drive the records and locks through every interleaving.
type uplinkKernel interface {
	EnsureBond(underlay.BondSpec) (created bool, err error)
	EnsureVlan(parent string, vlan int, name string) (got string, created bool, err error)
	RemoveOwned(name string) (removed bool, err error)
	OwnedLinks() ([]string, error)
}

type kernelUplinks struct{}

func (kernelUplinks) EnsureBond(s underlay.BondSpec) (bool, error) { return underlay.EnsureBond(s) }
func (kernelUplinks) EnsureVlan(p string, v int, n string) (string, bool, error) {
	return underlay.EnsureVlan(p, v, n)
}
func (kernelUplinks) RemoveOwned(name string) (bool, error) { return underlay.RemoveOwned(name) }
func (kernelUplinks) OwnedLinks() ([]string, error)         { return underlay.OwnedLinks() }

var uplinks uplinkKernel = kernelUplinks{}

// uplinkGCMinAge spares the records of attachments this young from GC: an ADD in flight
// has written its record before the runtime lists its attachment.
const uplinkGCMinAge = time.Minute

// vlanKey names VLAN vlan on base in the records and locks, whatever the interface is called.
func vlanKey(base string, vlan int) string { return fmt.Sprintf("%s.%d", base, vlan) }

// lockKeys are the plan's links, bottom first: the bond, then the VLAN.
func (p uplinkPlan) lockKeys() []string {
	var keys []string
	if p.Bond != nil {
		keys = append(keys, p.Bond.Name)
	}
	if p.Vlan != 0 {
		keys = append(keys, vlanKey(p.Base, p.Vlan))
	}
	return keys
}

// joinUplink makes what the plan needs and is missing, and records rec as a user of each
// link, all under the links' locks: a DEL of the last other user waits, and then sees this
// one. What it made is removed again when it fails, unless another attachment took it
// meanwhile (it cannot: the locks are held). It returns rec with the delegate's master.
func joinUplink(ctx context.Context, store uplinkStore, plan uplinkPlan, rec uplinkRecord, log *zap.Logger) (*uplinkRecord, error) {
	unlock, err := store.lock(ctx, plan.lockKeys())
	if err != nil {
		return nil, err
	}
	defer unlock()
	var made []uplinkLink
	fail := func(err error) (*uplinkRecord, error) {
		for i := len(made) - 1; i >= 0; i-- {
			removeIfUnused(store, made[i], log)
		}
		return nil, err
	}
	rec.Master = plan.Base
	if plan.Bond != nil {
		created, err := uplinks.EnsureBond(plan.Bond.spec)
		if err != nil {
			return fail(err)
		}
		l := uplinkLink{Key: plan.Bond.Name, Name: plan.Bond.Name}
		if created {
			made = append(made, l)
			log.Info("bond made", zap.String("bond", l.Name), zap.Strings("slaves", plan.Bond.Slaves), zap.String("mode", plan.Bond.spec.Mode))
		}
		rec.Links = append(rec.Links, l)
	}
	if plan.Vlan != 0 {
		name, created, err := uplinks.EnsureVlan(plan.Base, plan.Vlan, plan.VlanName)
		if errors.Is(err, underlay.ErrNoVlanName) {
			err = plan.VlanNameErr
		}
		if err != nil {
			return fail(fmt.Errorf("VLAN %d on %s: %w", plan.Vlan, plan.Base, err))
		}
		rec.Master = name
		if name != plan.Base { // else the master is that VLAN's interface already
			l := uplinkLink{Key: vlanKey(plan.Base, plan.Vlan), Name: name}
			if created {
				made = append(made, l)
				log.Info("VLAN interface made", zap.String("link", name), zap.Int("vlan", plan.Vlan), zap.String("on", plan.Base))
			}
			rec.Links = append(rec.Links, l)
		}
	}
	if len(rec.Links) == 0 {
		return &rec, nil
	}
	if err := store.join(&rec); err != nil {
		return fail(fmt.Errorf("recording the attachment's uplink in %s: %w", store.dir, err))
	}
	return &rec, nil
}

// removeIfUnused removes a link underpool made once no attachment uses it, under its lock
// (the caller's). A failure is logged: GC tries again.
func removeIfUnused(store uplinkStore, l uplinkLink, log *zap.Logger) {
	used, err := store.inUse(l.Key)
	if err != nil {
		log.Warn("reading an uplink's users", zap.String("link", l.Name), zap.Error(err))
		return
	}
	if used {
		return
	}
	removed, err := uplinks.RemoveOwned(l.Name)
	if err != nil {
		log.Warn("removing an uplink no attachment uses (GC retries)", zap.String("link", l.Name), zap.Error(err))
		return
	}
	store.dropUsers(l.Key)
	if removed {
		log.Info("uplink removed: its last attachment is gone", zap.String("link", l.Name))
	}
}

// leaveUplink gives back the attachment's uplink: out of each link's users, top first, and
// each link underpool made goes with its last user. No record: nothing to give back.
func leaveUplink(ctx context.Context, store uplinkStore, containerID, ifName string, log *zap.Logger) error {
	rec, err := store.load(containerID, ifName)
	if err != nil || rec == nil {
		return err
	}
	unlock, err := store.lock(ctx, rec.keys())
	if err != nil {
		return err
	}
	defer unlock()
	for i := len(rec.Links) - 1; i >= 0; i-- {
		if err := store.leave(rec.Links[i].Key, containerID, ifName); err != nil {
			return err
		}
		removeIfUnused(store, rec.Links[i], log)
	}
	return store.forget(containerID, ifName)
}

// gcUplinks gives back the uplinks of this network's attachments the runtime no longer
// lists (valid: "containerID/ifName"), spares records younger than uplinkGCMinAge, then
// removes every link underpool made that nobody uses (one whose ADD crashed before it
// recorded a user).
func gcUplinks(ctx context.Context, store uplinkStore, network string, valid map[string]bool, now time.Time, log *zap.Logger) error {
	recs, errs := store.all()
	for _, r := range recs {
		if r.Network != network || valid[r.ContainerID+"/"+r.IfName] || now.Sub(r.written) < uplinkGCMinAge {
			continue
		}
		if err := leaveUplink(ctx, store, r.ContainerID, r.IfName, log); err != nil {
			errs = append(errs, err)
		}
	}
	owned, err := uplinks.OwnedLinks()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, name := range owned {
		unlock, err := store.lock(ctx, []string{name})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		removeIfUnused(store, uplinkLink{Key: name, Name: name}, log)
		unlock()
	}
	return errors.Join(errs...)
}

// recordedUplink has DEL and CHECK run the delegate with the master its ADD hung the pod's
// link off (a VLAN interface), as the attachment's record says; none: the config's.
func (s *session) recordedUplink() {
	if !masterDelegates[s.conf.DelegateType()] {
		return
	}
	rec, err := newUplinkStore().load(s.args.ContainerID, s.args.IfName)
	if err != nil {
		s.log.Warn("reading the attachment's uplink record", zap.Error(err))
	}
	if rec != nil {
		s.conf.withUplink(rec.Master, 0)
	}
}
