package selection

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/underpool/underpool/api/v1"
)

// maxCachedSelectors bounds the cache: a cluster has far fewer pools with affinities,
// and when it is full it simply starts over.
const maxCachedSelectors = 4096

// selectorKey names one affinity of one version of one pool's spec. The apiserver bumps
// metadata.generation on every spec change, so a key never outlives the selector it
// names; the status commits that follow every allocation leave it alone.
type selectorKey struct {
	uid   types.UID
	gen   int64
	field string
}

type compiled struct {
	sel labels.Selector
	err error
}

// selectors caches affinities converted to label selectors: Eligible runs for every
// candidate pool of every ADD, and the conversion (parsing, validating, sorting the
// requirements) was the same work each time for a pool that had not changed.
var selectors = struct {
	sync.Mutex
	m map[selectorKey]compiled
}{m: map[selectorKey]compiled{}}

// selectorFor converts the pool's affinity once per spec generation. Pools without a
// UID or generation (built in memory, not read from the API) are converted every time.
func selectorFor(pool *v1.IPPool, field string, sel *metav1.LabelSelector) (labels.Selector, error) {
	if pool.UID == "" || pool.Generation == 0 {
		return metav1.LabelSelectorAsSelector(sel)
	}
	key := selectorKey{uid: pool.UID, gen: pool.Generation, field: field}
	selectors.Lock()
	c, ok := selectors.m[key]
	selectors.Unlock()
	if ok {
		return c.sel, c.err
	}
	c.sel, c.err = metav1.LabelSelectorAsSelector(sel)
	selectors.Lock()
	if len(selectors.m) >= maxCachedSelectors {
		selectors.m = map[selectorKey]compiled{}
	}
	selectors.m[key] = c
	selectors.Unlock()
	return c.sel, c.err
}
