package relabel

import "fmt"

// addedLabel is one label every kept series gains: its name, and its value
// for the Service the series resolves to.
type addedLabel struct {
	name  string
	value func(Service) string
}

// addedLabels are the labels every kept series gains, in output order. This
// is their one definition: AddedLabels, the labels each resolved key writes
// (on the fast path and the slow path alike) and the names a kept line must
// not carry already (checked by both paths) are all built from it.
var addedLabels = [...]addedLabel{
	{"kubernetes_namespace", func(s Service) string { return s.Namespace }},
	{"kubernetes_name", func(s Service) string { return s.Name }},
	{"kubernetes_kind", func(Service) string { return "Service" }},
	{"exported_namespace", func(s Service) string { return s.Namespace }},
	{"exported_service", func(s Service) string { return s.Name }},
}

// AddedLabels are the names of the labels every kept series gains, in
// output order.
var AddedLabels = func() (names [len(addedLabels)]string) {
	for i, l := range addedLabels {
		names[i] = l.name
	}
	return names
}()

// RenamedServiceLabel is the name Kong's `service` label gets, so that it can
// never clash with a Prometheus target label.
const RenamedServiceLabel = "kong_service"

// additions is what a Rewriter adds to the series it keeps, built once from
// a list of addedLabel (addedLabels, but for tests).
type additions struct {
	labels []addedLabel
	// reserved are RenamedServiceLabel and the added labels' names: a line
	// that already carries one is malformed, since its rewrite would carry
	// a label twice.
	reserved nameSet
}

// defaultAdditions are the additions of every Rewriter New returns.
var defaultAdditions = newAdditions(addedLabels[:])

func newAdditions(labels []addedLabel) *additions {
	names := []string{RenamedServiceLabel}
	for _, l := range labels {
		names = append(names, l.name)
	}
	return &additions{labels: labels, reserved: newNameSet(names)}
}

// appendLabels appends `,name="value"` for each added label of svc.
func (a *additions) appendLabels(dst []byte, svc Service) []byte {
	for _, l := range a.labels {
		dst = append(dst, ',')
		dst = append(dst, l.name...)
		dst = append(dst, '=', '"')
		dst = appendEscaped(dst, l.value(svc))
		dst = append(dst, '"')
	}
	return dst
}

// nameSet is a small set of label names, looked up for every label of a kept
// line: the lengths of its names rule out nearly every other label with one
// test, before any comparison.
type nameSet struct {
	lens  uint64 // bit n is set when a name has n bytes
	names []string
}

func newNameSet(names []string) nameSet {
	s := nameSet{names: names}
	for _, n := range names {
		if !validLabelName([]byte(n)) || len(n) >= 64 {
			panic(fmt.Sprintf("BUG: label name %q is not a label name of fewer than 64 bytes", n))
		}
		s.lens |= 1 << len(n)
	}
	return s
}

// has reports whether name is in s.
func (s *nameSet) has(name []byte) bool {
	if len(name) >= 64 || s.lens&(1<<len(name)) == 0 {
		return false
	}
	for _, n := range s.names {
		if string(name) == n {
			return true
		}
	}
	return false
}
