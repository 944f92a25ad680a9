package relabel

import (
	"sync"
	"sync/atomic"
)

// maxCachedTargets and maxCachedBytes bound the resolution cache, so a
// page full of distinct hostile names, or Kong names that change from page
// to page (route churn), cannot grow it without limit. A full cache starts
// again empty, releasing the names no page uses any more; the targets of
// the generation before stay reachable at most until the pages using them
// end, so the cache holds at most twice the bound.
const (
	maxCachedTargets = 1 << 16
	maxCachedBytes   = 16 << 20
)

// Rewriter rewrites pages for one Selection. It is safe for concurrent use;
// it caches what each Kong service name resolves to.
type Rewriter struct {
	sel   Selection
	added *additions

	mu          sync.RWMutex          // Protects cache and cachedBytes.
	cache       [2]map[string]*target // by key kind (service, upstream), then the raw label value
	cachedBytes int                   // about what cache holds

	noGuess bool // lookups skip the targets' next links (BenchmarkNextGuess's baseline)

	spareMu         sync.Mutex          // Protects spareUnresolved.
	spareUnresolved map[string]struct{} // emptied, what the last released Page left: the next one's unresolved
}

// unresolvedSet returns an empty set for a page's unresolved names: the
// one the last released page left, or a new one. A page of many
// unresolved names then allocates no more than one of few, and the
// outcome does not depend on the garbage collector, as a sync.Pool's does.
func (rw *Rewriter) unresolvedSet() map[string]struct{} {
	rw.spareMu.Lock()
	m := rw.spareUnresolved
	rw.spareUnresolved = nil
	rw.spareMu.Unlock()
	if m == nil {
		m = map[string]struct{}{}
	}
	return m
}

// keepUnresolvedSet empties m and keeps it for the next page.
func (rw *Rewriter) keepUnresolvedSet(m map[string]struct{}) {
	clear(m)
	rw.spareMu.Lock()
	rw.spareUnresolved = m
	rw.spareMu.Unlock()
}

// target is what one Kong service or upstream name resolves to.
type target struct {
	key      string // the raw label value
	svc      Service
	resolved bool
	multi    bool    // stands for several Services (tags, route mapping or name): drop as DropMultiBackend
	metrics  Metrics // the flags selected for the resolved Service
	labels   []byte  // ,kubernetes_namespace="…",…,exported_service="…"

	// next is the target looked up after this one the last time, on
	// this page or an earlier one: Kong writes every family in the same
	// order of services, so it is the right guess for every run but the
	// first page's first, and spares the map and its lock. It is only a
	// guess, checked against the key, so a stale or wrong one costs a map
	// lookup and nothing else; FuzzPageAfterPage feeds different pages to
	// one Rewriter to hold it to that, and BenchmarkNextGuess measures
	// what it saves.
	next atomic.Pointer[target]
}

// New returns a Rewriter for sel. sel must not be modified afterwards.
func New(sel Selection) *Rewriter { return newRewriter(sel, defaultAdditions) }

func newRewriter(sel Selection, added *additions) *Rewriter {
	return &Rewriter{sel: sel, added: added, cache: [2]map[string]*target{{}, {}}}
}

// Selection returns the selection the Rewriter was made for.
func (rw *Rewriter) Selection() Selection { return rw.sel }

func (rw *Rewriter) target(kind int, raw []byte) *target {
	rw.mu.RLock()
	t := rw.cache[kind][string(raw)]
	rw.mu.RUnlock()
	if t != nil {
		return t
	}
	t = rw.resolve(kind, unescapeLabelValue(raw))
	t.key = string(raw)
	size := len(t.key) + len(t.labels) + 200 // with the map entry and the target itself
	rw.mu.Lock()
	if len(rw.cache[kind]) >= maxCachedTargets || rw.cachedBytes+size > maxCachedBytes {
		// Full: start again. The old targets' next links go, so that no
		// target of the new cache keeps the old ones reachable.
		for _, m := range rw.cache {
			for _, old := range m {
				old.next.Store(nil)
			}
		}
		rw.cache, rw.cachedBytes = [2]map[string]*target{{}, {}}, 0
	}
	rw.cache[kind][t.key] = t
	rw.cachedBytes += size
	rw.mu.Unlock()
	return t
}

func (rw *Rewriter) resolve(kind int, name string) *target {
	svc, ok := rw.sel.Mappings[name]
	if _, multi := rw.sel.MultiBackend[name]; !ok && multi {
		return &target{multi: true}
	}
	if !ok && kind == keyService && rw.sel.Tags != nil {
		tag, seen := rw.sel.Tags[name]
		switch {
		case !seen:
			if rw.sel.OnUnseen != nil {
				rw.sel.OnUnseen(name)
			}
		case tag.Kind == "Service":
			svc, ok = tag.Service, true
		case tag.Kind != "":
			return &target{multi: true}
		}
	}
	if !ok {
		if kind == keyUpstream {
			svc, ok = ResolveUpstreamName(name)
		} else {
			svc, ok = ResolveServiceName(name)
		}
	}
	if !ok && IsMultiBackendName(name) {
		return &target{multi: true}
	}
	if !ok {
		if rw.sel.OnUnresolved != nil {
			rw.sel.OnUnresolved(name)
		}
		return &target{}
	}
	labels := rw.added.appendLabels(make([]byte, 0, 128), svc)
	return &target{svc: svc, resolved: true, metrics: rw.sel.Services[svc], labels: labels}
}

// Resolve tells how rw resolves a Kong service name (with upstream, a Kong
// upstream name): the Service and the flags selected for it, or why its
// series are dropped (DropUnresolved or DropMultiBackend). It is for
// -check-config; scrapes resolve through their Page.
func (rw *Rewriter) Resolve(name string, upstream bool) (svc Service, kept Metrics, drop DropReason, ok bool) {
	kind := keyService
	if upstream {
		kind = keyUpstream
	}
	t := rw.resolve(kind, name)
	switch {
	case t.multi:
		return Service{}, 0, DropMultiBackend, false
	case !t.resolved:
		return Service{}, 0, DropUnresolved, false
	}
	return t.svc, t.metrics, 0, true
}

// SeriesKey returns the Kong service (or, with upstream set, upstream)
// name that a series line of a family the rewriter can keep is keyed by;
// ok is false for any other line.
func SeriesKey(line []byte) (name string, upstream, ok bool) {
	p := Page{lastFamily: -1, lastKind: -1}
	fi, nameEnd := p.family(line)
	if fi < 0 || nameEnd < 0 || line[nameEnd] != '{' {
		return "", false, false
	}
	labels, _, ok := p.parseLabels(line[nameEnd+1:])
	if !ok {
		return "", false, false
	}
	for _, l := range labels {
		if string(l.name) == families[fi].keyLabel {
			return unescapeLabelValue(l.value), keyKind[fi] == keyUpstream, true
		}
	}
	return "", false, false
}

// drop reports whether t drops a series of fam, and why.
func (t *target) drop(fam *family) (DropReason, bool) {
	switch {
	case t.multi:
		return DropMultiBackend, true
	case !t.resolved:
		return DropUnresolved, true
	case t.metrics&fam.flag == 0:
		return DropUnselected, true
	}
	return 0, false
}
