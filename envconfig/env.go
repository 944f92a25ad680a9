// Package envconfig reads a program's settings from environment variables:
// a settings struct declares each variable with `env`, `envDefault` and
// `help` tags, ParseEnv fills it and names every invalid or unknown
// variable, and Variables describes them for -help. It also holds the value
// types such settings use (URL, ByteSize, Secret, LogFormat), the log
// settings both programs share and the logger built from them.
package envconfig

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// ParseEnv fills a T from the variables in environ ("KEY=value" pairs) whose
// names start with prefix, using T's `env`, `envDefault` and `help` struct
// tags. It fails with an error naming the variable when a value is invalid,
// and when a variable that starts with prefix is not one of T's (a typo),
// except Kubernetes service-link variables, which the kubelet puts into
// every container and which are never typos.
func ParseEnv[T any](prefix string, environ []string) (T, error) {
	var dst T
	vars := env.ToMap(environ)
	params, err := env.GetFieldParamsWithOptions(&dst, env.Options{Prefix: prefix})
	if err != nil {
		return dst, fmt.Errorf("BUG: settings struct: %w", err)
	}
	known := make(map[string]bool, len(params))
	for _, p := range params {
		known[p.Key] = true
	}
	var errs []error
	var names []string
	for name := range vars {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasPrefix(name, prefix) && !known[name] && !IsServiceLinkVariable(name, vars[name]) {
			errs = append(errs, fmt.Errorf("%s: unknown variable (known: %s)", name, strings.Join(KnownVariables[T](prefix), ", ")))
		}
	}
	if err := env.ParseWithOptions(&dst, env.Options{Prefix: prefix, Environment: vars}); err != nil {
		keys := fieldKeys(reflect.TypeOf(dst), prefix)
		for _, e := range unwrapAll(err) {
			var pe env.ParseError
			if errors.As(e, &pe) {
				name := keys[pe.Name].name
				errs = append(errs, &VarError{Name: name, Value: vars[name], Err: explain(keys[pe.Name].typ, pe.Err)})
				continue
			}
			errs = append(errs, e)
		}
	}
	return dst, errors.Join(errs...)
}

// VarError is a variable whose value is refused. Its message quotes the
// value, with a URL's password as xxxxx (Redact).
type VarError struct {
	Name, Value string
	Err         error
}

func (e *VarError) Error() string { return fmt.Sprintf("%s=%q: %v", e.Name, Redact(e.Value), e.Err) }
func (e *VarError) Unwrap() error { return e.Err }

// Invalid reports whether err, as ParseEnv returns it, refuses the value
// of the variable name: the checks a program makes after ParseEnv skip such
// a variable, which holds its zero value, so that each problem is reported
// once.
func Invalid(err error, name string) bool {
	switch e := err.(type) { //nolint:errorlint // it walks the tree of joined errors itself, one level at a time
	case nil:
		return false
	case *VarError:
		return e.Name == name
	case interface{ Unwrap() []error }:
		for _, err := range e.Unwrap() {
			if Invalid(err, name) {
				return true
			}
		}
	}
	return false
}

// explain replaces the error of a type whose own message says neither what
// was expected nor an example (the standard library's) with one that does.
func explain(t reflect.Type, err error) error {
	switch t {
	case reflect.TypeFor[slog.Level]():
		return errors.New("want a log level: debug, info, warn or error (for example info)")
	case reflect.TypeFor[time.Duration]():
		return errors.New("want a duration with a unit, such as 10s, 500ms or 1m30s")
	}
	return err
}

// KnownVariables lists the variable names T declares, in field order.
func KnownVariables[T any](prefix string) []string {
	var names []string
	for _, v := range Variables[T](prefix) {
		names = append(names, v.Name)
	}
	return names
}

// Variable describes one setting for -help.
type Variable struct {
	Name, Default, Help string
}

// Variables describes every variable T declares, in field order; the
// fields of an embedded struct without an env tag (such as LogSettings)
// count as T's own, where it is embedded.
func Variables[T any](prefix string) []Variable {
	var vars []Variable
	for _, f := range fields(reflect.TypeFor[T]()) {
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" || name == "-" {
			continue
		}
		vars = append(vars, Variable{Name: prefix + name, Default: f.Tag.Get("envDefault"), Help: f.Tag.Get("help")})
	}
	return vars
}

// fields lists t's fields in order, with those of an embedded struct
// without an env tag in its place, as the env package parses them.
func fields(t reflect.Type) []reflect.StructField {
	var fs []reflect.StructField
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct && f.Tag.Get("env") == "" {
			fs = append(fs, fields(f.Type)...)
			continue
		}
		fs = append(fs, f)
	}
	return fs
}

// fieldKey is a field's variable and type.
type fieldKey struct {
	name string
	typ  reflect.Type
}

// fieldKeys maps each field's name, as a ParseError gives it, to its
// variable and type.
func fieldKeys(t reflect.Type, prefix string) map[string]fieldKey {
	keys := map[string]fieldKey{}
	for _, f := range fields(t) {
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		keys[f.Name] = fieldKey{prefix + name, f.Type}
	}
	return keys
}

func unwrapAll(err error) []error {
	var agg env.AggregateError
	if errors.As(err, &agg) {
		return agg.Errors
	}
	return []error{err}
}

var (
	// <SVC>_SERVICE_HOST=10.0.0.1, <SVC>_SERVICE_PORT=80, <SVC>_SERVICE_PORT_<NAME>=80
	serviceHostOrPort = regexp.MustCompile(`^[A-Z0-9_]+_SERVICE_(HOST|PORT(_[A-Z0-9_]+)?)$`)
	// <SVC>_PORT=tcp://10.0.0.1:80, <SVC>_PORT_80_TCP=tcp://…, _PROTO, _PORT, _ADDR
	dockerLink = regexp.MustCompile(`^[A-Z0-9_]+_PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?$`)
	linkURL    = regexp.MustCompile(`^(tcp|udp|sctp)://(\[[0-9a-fA-F:.]+\]|[0-9.]+):[0-9]+$`)
	portNumber = regexp.MustCompile(`^[0-9]{1,5}$`)
)

// IsServiceLinkVariable reports whether name=value is one of the variables
// the kubelet sets for every Service in a pod's namespace. Both the name
// and the shape of the value must fit, so that a typo such as
// SIDECAR_LISTEN_PORT=9542 is still reported.
func IsServiceLinkVariable(name, value string) bool {
	switch {
	case strings.HasSuffix(name, "_SERVICE_HOST") && serviceHostOrPort.MatchString(name):
		_, err := netip.ParseAddr(value)
		return err == nil
	case serviceHostOrPort.MatchString(name):
		return portNumber.MatchString(value)
	case dockerLink.MatchString(name):
		switch {
		case strings.HasSuffix(name, "_PROTO"):
			return value == "tcp" || value == "udp" || value == "sctp"
		case strings.HasSuffix(name, "_ADDR"):
			_, err := netip.ParseAddr(value)
			return err == nil
		case strings.HasSuffix(name, "_TCP_PORT"), strings.HasSuffix(name, "_UDP_PORT"), strings.HasSuffix(name, "_SCTP_PORT"):
			return portNumber.MatchString(value)
		default:
			return linkURL.MatchString(value)
		}
	}
	return false
}
