package chain

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/underpool/underpool/netplan"
	"github.com/underpool/underpool/underlay"
)

// fakeUplinks is the node's links as the uplink code sees them: what exists, what
// underpool made, how often each was made and removed. Hooks stall or fail a call.
type fakeUplinks struct {
	mu      sync.Mutex
	links   map[string]bool // name -> made by underpool
	made    map[string]int
	removed map[string]int
	// inVlan runs inside EnsureVlan before the link is looked at; gap is how long it
	// takes between finding no link and making it, which the kernel refuses (EEXIST)
	// should another make it meanwhile
	inVlan  func()
	gap     time.Duration
	vlanErr error
}

func newFakeUplinks(t *testing.T, existing ...string) *fakeUplinks {
	f := &fakeUplinks{links: map[string]bool{}, made: map[string]int{}, removed: map[string]int{}}
	for _, l := range existing {
		f.links[l] = false
	}
	prevKernel, prevStore := uplinks, newUplinkStore
	dir := t.TempDir()
	uplinks, newUplinkStore = f, func() uplinkStore { return uplinkStore{dir: dir} }
	t.Cleanup(func() { uplinks, newUplinkStore = prevKernel, prevStore })
	return f
}

func (f *fakeUplinks) ensure(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.links[name]; ok {
		return false
	}
	f.links[name] = true
	f.made[name]++
	return true
}

func (f *fakeUplinks) EnsureBond(s underlay.BondSpec) (bool, error) { return f.ensure(s.Name), nil }

func (f *fakeUplinks) EnsureVlan(parent string, vlan int, name string) (string, bool, error) {
	if f.inVlan != nil {
		f.inVlan()
	}
	if f.vlanErr != nil {
		return "", false, f.vlanErr
	}
	if f.has(name) {
		return name, false, nil
	}
	time.Sleep(f.gap)
	if !f.ensure(name) {
		return "", false, fmt.Errorf("creating %s: file exists", name)
	}
	return name, true, nil
}

func (f *fakeUplinks) RemoveOwned(name string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if owned, ok := f.links[name]; !ok || !owned {
		return false, nil
	}
	delete(f.links, name)
	f.removed[name]++
	return true, nil
}

func (f *fakeUplinks) OwnedLinks() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for name, owned := range f.links {
		if owned {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeUplinks) has(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.links[name]
	return ok
}

// vlanPlan is macvlan on eth1 with pools on VLAN 100.
func vlanPlan(t *testing.T, fields string, vlan int32) uplinkPlan {
	t.Helper()
	conf, err := loadConfOf(t, fields)
	if err != nil {
		t.Fatal(err)
	}
	p, err := planUplink(conf, []netplan.Address{addr("a", vlan)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func join(t *testing.T, plan uplinkPlan, containerID string) (*uplinkRecord, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return joinUplink(ctx, newUplinkStore(), plan, uplinkRecord{Network: "n", ContainerID: containerID, IfName: "net1"}, zap.NewNop())
}

func leave(t *testing.T, containerID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leaveUplink(ctx, newUplinkStore(), containerID, "net1", zap.NewNop()); err != nil {
		t.Fatalf("giving back %s's uplink: %v", containerID, err)
	}
}

const macvlanOnEth1 = `"delegate":{"type":"macvlan","master":"eth1"}`

func TestAttachmentsShareTheVlanInterfaceAndTheLastDelRemovesIt(t *testing.T) {
	f := newFakeUplinks(t, "eth1")
	plan := vlanPlan(t, macvlanOnEth1, 100)
	for _, c := range []string{"a", "b"} {
		rec, err := join(t, plan, c)
		if err != nil || rec.Master != "eth1.100" {
			t.Fatalf("ADD %s: master %v, %v; want eth1.100", c, rec, err)
		}
	}
	if f.made["eth1.100"] != 1 {
		t.Fatalf("eth1.100 made %d times, want once", f.made["eth1.100"])
	}
	leave(t, "a")
	if !f.has("eth1.100") {
		t.Fatal("the DEL of a removed eth1.100 while b still hangs off it")
	}
	leave(t, "a") // DEL again: nothing to give back
	leave(t, "b")
	if f.has("eth1.100") || f.removed["eth1.100"] != 1 {
		t.Fatalf("after the last DEL eth1.100 is still there (removed %d times)", f.removed["eth1.100"])
	}
	if rec, _ := newUplinkStore().load("b", "net1"); rec != nil {
		t.Fatalf("the record outlived the DEL: %+v", rec)
	}
}

func TestAnOperatorsVlanInterfaceIsUsedAndKept(t *testing.T) {
	f := newFakeUplinks(t, "eth1", "eth1.100")
	if _, err := join(t, vlanPlan(t, macvlanOnEth1, 100), "a"); err != nil {
		t.Fatal(err)
	}
	leave(t, "a")
	if !f.has("eth1.100") || f.made["eth1.100"] != 0 {
		t.Fatal("the operator's eth1.100 was made or removed by underpool")
	}
}

// A VLAN that cannot be made after ADD made the bond under it takes the bond back: a
// failed ADD leaves nothing.
func TestAFailedVlanTakesBackTheBondItsAddMade(t *testing.T) {
	f := newFakeUplinks(t, "eth1", "eth2")
	f.vlanErr = errors.New("operation not supported")
	plan := vlanPlan(t, `"vlan":100,"bond":{"name":"bond0","slaves":["eth1","eth2"]},"delegate":{"type":"macvlan"}`, 0)
	if _, err := join(t, plan, "a"); err == nil {
		t.Fatal("ADD succeeded without its VLAN")
	}
	if f.has("bond0") || f.removed["bond0"] != 1 {
		t.Fatalf("the failed ADD left bond0 behind (made %d, removed %d)", f.made["bond0"], f.removed["bond0"])
	}
	if rec, _ := newUplinkStore().load("a", "net1"); rec != nil {
		t.Fatalf("the failed ADD left a record: %+v", rec)
	}
}

func TestABondWithAVlanGoesWithItsLastUserTopFirst(t *testing.T) {
	f := newFakeUplinks(t, "eth1", "eth2")
	plan := vlanPlan(t, `"vlan":100,"bond":{"name":"bond0","slaves":["eth1","eth2"]},"delegate":{"type":"macvlan"}`, 0)
	rec, err := join(t, plan, "a")
	if err != nil || rec.Master != "bond0.100" {
		t.Fatalf("ADD: %+v, %v", rec, err)
	}
	untagged := vlanPlan(t, `"bond":{"name":"bond0","slaves":["eth1","eth2"]},"delegate":{"type":"macvlan"}`, 0)
	if rec, err := join(t, untagged, "b"); err != nil || rec.Master != "bond0" {
		t.Fatalf("untagged ADD on the bond: %+v, %v", rec, err)
	}
	leave(t, "a")
	if f.has("bond0.100") || !f.has("bond0") {
		t.Fatal("the DEL of a's VLAN's last user: want bond0.100 gone and bond0 kept for b")
	}
	leave(t, "b")
	if f.has("bond0") {
		t.Fatal("bond0 outlived its last user")
	}
}

// Eight ADDs at once onto a VLAN nobody made yet: it is made once, every ADD gets it.
func TestConcurrentAddsOnANewVlanMakeItOnce(t *testing.T) {
	f := newFakeUplinks(t, "eth1")
	f.gap = 2 * time.Millisecond
	plan := vlanPlan(t, macvlanOnEth1, 100)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := join(t, plan, fmt.Sprintf("c%d", i)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if f.made["eth1.100"] != 1 {
		t.Fatalf("eth1.100 made %d times, want once", f.made["eth1.100"])
	}
	users, _ := os.ReadDir(newUplinkStore().usersDir("eth1.100"))
	if len(users) != 8 {
		t.Fatalf("%d users recorded, want 8", len(users))
	}
}

// The DEL of the last user of a VLAN interface while an ADD is attaching to it: the DEL
// waits for the ADD's lock, then sees the new user and keeps the link. Without the lock
// it would remove the link the ADD has just found.
func TestADelOfTheLastUserWaitsForAnAddAttachingAndKeepsTheLink(t *testing.T) {
	f := newFakeUplinks(t, "eth1")
	plan := vlanPlan(t, macvlanOnEth1, 100)
	if _, err := join(t, plan, "a"); err != nil {
		t.Fatal(err)
	}
	inside, release := make(chan struct{}), make(chan struct{})
	f.inVlan = func() { close(inside); <-release }
	added := make(chan error)
	go func() {
		_, err := join(t, plan, "b")
		added <- err
	}()
	<-inside // b's ADD found the link and has not recorded itself yet
	f.inVlan = nil
	deleted := make(chan struct{})
	go func() { leave(t, "a"); close(deleted) }()
	select {
	case <-deleted:
		t.Fatal("the DEL of a ran while b's ADD was attaching to eth1.100")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	<-deleted
	if !f.has("eth1.100") {
		t.Fatal("the DEL of a removed eth1.100, which b's ADD had just attached to")
	}
}

func TestUplinkGCGivesBackOnlyItsNetworksStaleRecordsAndUnusedLinks(t *testing.T) {
	f := newFakeUplinks(t, "eth1")
	store := newUplinkStore()
	plan := vlanPlan(t, macvlanOnEth1, 100)
	for _, c := range []string{"live", "gone", "young"} {
		if _, err := join(t, plan, c); err != nil {
			t.Fatal(err)
		}
	}
	other := uplinkRecord{Network: "other", ContainerID: "theirs", IfName: "net1", Master: "eth1.200", Links: []uplinkLink{{Key: "eth1.200", Name: "eth1.200"}}}
	f.links["eth1.200"] = true
	if err := store.join(&other); err != nil {
		t.Fatal(err)
	}
	f.links["eth1.300"] = true // made by an ADD that crashed before recording a user
	old := time.Now().Add(-2 * uplinkGCMinAge)
	for _, c := range []string{"live", "gone", "theirs"} {
		key, _ := attachmentKey(c, "net1")
		if err := os.Chtimes(store.recordPath(key), old, old); err != nil {
			t.Fatal(err)
		}
	}
	valid := map[string]bool{"live/net1": true}
	if err := gcUplinks(context.Background(), store, "n", valid, time.Now(), zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	for c, want := range map[string]bool{"live": true, "gone": false, "young": true, "theirs": true} {
		if rec, _ := store.load(c, "net1"); (rec != nil) != want {
			t.Errorf("record of %s kept: %v, want %v", c, rec != nil, want)
		}
	}
	if !f.has("eth1.100") || !f.has("eth1.200") || f.has("eth1.300") {
		t.Fatalf("after GC: eth1.100 %v (want kept: live uses it), eth1.200 %v (another network's: kept), eth1.300 %v (nobody's: gone)",
			f.has("eth1.100"), f.has("eth1.200"), f.has("eth1.300"))
	}
}

func TestAttachmentKeyRefusesWhatWouldLeaveTheDirectory(t *testing.T) {
	for _, c := range [][2]string{{"../x", "net1"}, {"", "net1"}, {"c", "a/b"}, {"a:b", "c"}} {
		if _, err := attachmentKey(c[0], c[1]); err == nil {
			t.Errorf("container %q interface %q accepted", c[0], c[1])
		}
	}
	a, _ := attachmentKey("a_b", "c")
	b, _ := attachmentKey("a", "b_c")
	if a == b {
		t.Fatalf("two attachments share the record %s", a)
	}
	store := uplinkStore{dir: t.TempDir()}
	if rec, err := store.load("never", "net1"); rec != nil || err != nil {
		t.Fatalf("no record: want nil, nil, got %v, %v", rec, err)
	}
}
