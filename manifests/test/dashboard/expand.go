package dashboard

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Value is what a template variable is set to: one value, several (a
// multi-value variable), or All.
type Value struct {
	Values []string
	All    bool // "All" selected: AllValue, or every value of Values
}

// One is a variable set to the single value v.
func One(v string) Value { return Value{Values: []string{v}} }

// reference matches $name, ${name} and ${name:format}, as Grafana reads
// template variables in a query.
var reference = regexp.MustCompile(`\$\{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-z]+)?\}|\$([a-zA-Z_][a-zA-Z0-9_]*)`)

// regexSpecial are the characters Grafana's Prometheus data source escapes
// in the values of a multi-value or include-all variable (its
// prometheusRegularEscape), since such variables are used with =~.
var regexSpecial = regexp.MustCompile(`[\\^$*+?.()|{}\[\]]`)

// Expand substitutes the dashboard's template variables and the built-in
// ones in builtins (such as __rate_interval) in expr, as Grafana's
// Prometheus data source does: a single-value variable as it is; a
// multi-value or include-all variable's values regex-escaped, several
// joined as (a|b); All as the variable's AllValue. A variable that is
// neither the dashboard's nor a built-in is an error, so a misspelt name
// fails instead of reaching Prometheus.
func (d *Dashboard) Expand(expr string, values map[string]Value, builtins map[string]string) (string, error) {
	byName := map[string]Variable{}
	for _, v := range d.Variables {
		byName[v.Name] = v
	}
	var errs []string
	out := reference.ReplaceAllStringFunc(expr, func(ref string) string {
		m := reference.FindStringSubmatch(ref)
		name := m[1] + m[2]
		if b, ok := builtins[name]; ok {
			return b
		}
		v, ok := byName[name]
		if !ok {
			errs = append(errs, fmt.Sprintf("$%s is no variable of the dashboard", name))
			return ref
		}
		val, ok := values[name]
		if !ok {
			errs = append(errs, fmt.Sprintf("$%s has no value", name))
			return ref
		}
		s, err := v.format(val)
		if err != nil {
			errs = append(errs, err.Error())
			return ref
		}
		return s
	})
	if len(errs) > 0 {
		return "", fmt.Errorf("expanding %q: %s", expr, strings.Join(errs, "; "))
	}
	return out, nil
}

// format is the text a variable set to val stands for in a query.
func (v Variable) format(val Value) (string, error) {
	if val.All {
		if !v.IncludeAll {
			return "", fmt.Errorf("$%s has no All option", v.Name)
		}
		if v.AllValue != "" {
			return v.AllValue, nil
		}
	} else if len(val.Values) != 1 && !v.Multi {
		return "", fmt.Errorf("$%s takes one value, not %d", v.Name, len(val.Values))
	}
	if len(val.Values) == 0 {
		return "", fmt.Errorf("$%s has no value", v.Name)
	}
	if !v.Multi && !v.IncludeAll {
		return val.Values[0], nil
	}
	escaped := make([]string, len(val.Values))
	for i, s := range val.Values {
		escaped[i] = regexSpecial.ReplaceAllString(s, `\$0`)
	}
	if len(escaped) == 1 {
		return escaped[0], nil
	}
	return "(" + strings.Join(escaped, "|") + ")", nil
}

// RangeBuiltins are Grafana's built-in interval variables for a range
// query with the given step on a data source whose scrape interval is
// scrape: $__interval is the step, $__rate_interval is the larger of
// step + scrape and four scrapes (Grafana's rule), $__range the range.
func RangeBuiltins(step, scrape, rangeLen time.Duration) map[string]string {
	rate := max(step+scrape, 4*scrape)
	return map[string]string{
		"__interval":      promDuration(step),
		"__interval_ms":   fmt.Sprint(step.Milliseconds()),
		"__rate_interval": promDuration(rate),
		"__range":         promDuration(rangeLen),
	}
}

// promDuration prints d as a Prometheus duration in whole milliseconds.
func promDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}
