package relabel

import (
	"fmt"
	"slices"
	"strings"
)

// Metrics is a set of the metric flags of a DataPlaneMetricsExtension's
// spec.config (Kong Operator's MetricsConfig: latency, bandwidth,
// upstreamHealth, statusCode), one bit each. Each flag keeps a group of Kong
// metric families; a value with several bits set keeps all of theirs.
type Metrics uint8

// The flags of a DataPlaneMetricsExtension's spec.config, each a Metrics
// with one bit set. flagDefs says which Kong families each keeps.
const (
	// Latency keeps Kong's latency histograms.
	Latency Metrics = 1 << iota
	// StatusCode keeps Kong's request counter.
	StatusCode
	// Bandwidth keeps Kong's bandwidth counter.
	Bandwidth
	// UpstreamHealth keeps Kong's upstream target health.
	UpstreamHealth
)

// flagDef is one flag and the Kong families it keeps.
type flagDef struct {
	flag     Metrics
	name     string   // the flag's field in spec.config
	families []family // name, keyLabel and histogram; flag comes from the flagDef
}

// flagDefs are the flags, in the order of Kong's CRD, with the Kong
// families each keeps. This is the one table of them: Flags, Metrics.String,
// FamilyNames and the rewriter's families come from it, config decodes
// spec.config by it, and a test checks docs/reference.md's table against it.
var flagDefs = [...]flagDef{
	{Latency, "latency", []family{
		{name: "kong_upstream_latency_ms", keyLabel: "service", histogram: true},
		{name: "kong_request_latency_ms", keyLabel: "service", histogram: true},
		{name: "kong_kong_latency_ms", keyLabel: "service", histogram: true},
	}},
	{Bandwidth, "bandwidth", []family{{name: "kong_bandwidth_bytes", keyLabel: "service"}}},
	{UpstreamHealth, "upstreamHealth", []family{{name: "kong_upstream_target_health", keyLabel: "upstream"}}},
	{StatusCode, "statusCode", []family{{name: "kong_http_requests_total", keyLabel: "service"}}},
}

// Flags lists every flag, in the order of Kong's CRD, each a Metrics with
// one bit set whose String is its field in spec.config.
var Flags = func() (flags [len(flagDefs)]Metrics) {
	for i, d := range flagDefs {
		flags[i] = d.flag
	}
	return flags
}()

// String lists the flags by their extension-file names, for logs and -check-config.
func (m Metrics) String() string {
	var names []string
	for _, d := range flagDefs {
		if m&d.flag != 0 {
			names = append(names, d.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// FamilyNames lists the Kong family names the flags of m keep, sorted.
func FamilyNames(m Metrics) []string {
	var names []string
	for _, fam := range families {
		if m&fam.flag != 0 {
			names = append(names, fam.name)
		}
	}
	return names
}

// family describes one Kong metric family the rewriter can keep.
type family struct {
	name      string  // family name as in # HELP and # TYPE
	flag      Metrics // the flag that keeps it
	keyLabel  string  // the label naming the Kong service or upstream
	histogram bool
}

// numFamilies is the number of families flagDefs lists, a constant so that
// a Page can hold its per-family state in arrays.
const numFamilies = 6

// families are the Kong families a selection can keep, by index: those of
// flagDefs, sorted by name.
var families = func() (fams [numFamilies]family) {
	var all []family
	for _, d := range flagDefs {
		for _, f := range d.families {
			f.flag = d.flag
			all = append(all, f)
		}
	}
	if len(all) != numFamilies {
		panic(fmt.Sprintf("BUG: flagDefs lists %d families, numFamilies is %d", len(all), numFamilies))
	}
	slices.SortFunc(all, func(a, b family) int { return strings.Compare(a.name, b.name) })
	copy(fams[:], all)
	return fams
}()

var (
	familyByName   = map[string]int{} // family name → index into families
	familyBySeries = map[string]int{} // series name (with _bucket, _sum, _count) → index

	keyPrefix [len(families)]string // `service="` or `upstream="`, by family
	keyKind   [len(families)]int    // keyService or keyUpstream, by family
)

func init() {
	for i, f := range families {
		if _, dup := familyByName[f.name]; dup {
			panic("BUG: flagDefs lists family " + f.name + " twice")
		}
		familyByName[f.name] = i
		keyPrefix[i] = f.keyLabel + `="`
		switch f.keyLabel {
		case "service":
		case "upstream":
			keyKind[i] = keyUpstream
		default:
			panic("BUG: family " + f.name + " is keyed by neither service nor upstream")
		}
		if !f.histogram {
			familyBySeries[f.name] = i
			continue
		}
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			familyBySeries[f.name+suffix] = i
		}
	}
}

// DropReason says why a line was not kept.
type DropReason int

// The reasons for dropping a series line.
const (
	// DropFamily: the line belongs to a family no flag keeps.
	DropFamily DropReason = iota
	// DropUnselected: the series' Service is not selected for its family.
	DropUnselected
	// DropUnresolved: the series' Kong service maps to no Kubernetes Service.
	DropUnresolved
	// DropMalformed: the line is not valid text exposition format. A line
	// is only checked in full once its family and key say it is kept, so
	// a malformed line of a dropped Service counts under the reason its
	// key gives (see reference_test.go for the exact rules).
	DropMalformed
	// DropMultiBackend: the series' Kong service stands for several
	// Services: KIC tags it with its HTTPRoute, the route mapping lists it
	// as a rule with several backends, or its combined-services name joins
	// several backends (IsMultiBackendName).
	DropMultiBackend
	numDropReasons
)

// DropReasons lists every DropReason.
var DropReasons = [...]DropReason{DropFamily, DropUnselected, DropUnresolved, DropMalformed, DropMultiBackend}

func (r DropReason) String() string {
	return [...]string{"family", "unselected", "unresolved", "malformed", "multi_backend"}[r]
}

// Stats counts the series lines of one page.
type Stats struct {
	Kept    int
	Dropped [numDropReasons]int
	// Unresolved is the number of distinct Kong service and upstream
	// names whose series were dropped as DropUnresolved.
	Unresolved int
}

const (
	keyService = iota
	keyUpstream
)
