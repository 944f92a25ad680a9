package relabel

// family describes one Kong metric family the rewriter can keep.
type family struct {
	name      string // family name as in # HELP and # TYPE
	flag      Family
	keyLabel  string // the label naming the Kong service or upstream
	histogram bool
}

// families are the Kong families a selection can keep, by index.
var families = [...]family{
	{"kong_bandwidth_bytes", Bandwidth, "service", false},
	{"kong_http_requests_total", StatusCode, "service", false},
	{"kong_kong_latency_ms", Latency, "service", true},
	{"kong_request_latency_ms", Latency, "service", true},
	{"kong_upstream_latency_ms", Latency, "service", true},
	{"kong_upstream_target_health", UpstreamHealth, "upstream", false},
}

// FamilyNames lists the Kong family names a flag keeps.
func FamilyNames(f Family) []string {
	var names []string
	for _, fam := range families {
		if f&fam.flag != 0 {
			names = append(names, fam.name)
		}
	}
	return names
}

// upstreamFamily is the family whose key is upstream, not service.
const upstreamFamily = 5

var (
	familyByName   = map[string]int{} // family name → index into families
	familyBySeries = map[string]int{} // series name (with _bucket, _sum, _count) → index

	keyPrefix [len(families)]string // `service="` or `upstream="`, by family
	keyKind   [len(families)]int    // keyService or keyUpstream, by family
)

func init() {
	for i, f := range families {
		familyByName[f.name] = i
		keyPrefix[i] = f.keyLabel + `="`
		if f.keyLabel == "upstream" {
			keyKind[i] = keyUpstream
		}
		if (f.keyLabel == "upstream") != (i == upstreamFamily) {
			panic("BUG: upstreamFamily is not the family keyed by upstream")
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
	// DropMultiBackend: the series' Kong service is tagged with a kind
	// other than Service (KIC tags a rule with several backends with its
	// HTTPRoute), so it stands for no single Kubernetes Service.
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
}

const (
	keyService = iota
	keyUpstream
)
