package envconfig

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Secret is a setting that must not be logged. It prints as <secret> (an
// empty one as the empty string) through fmt, log/slog, encoding/json and
// anything else that uses fmt.Stringer, fmt.GoStringer, slog.LogValuer or
// encoding.TextMarshaler; only a conversion to string reveals it.
type Secret string

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<secret>"
}

// GoString implements fmt.GoStringer, for %#v.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue implements slog.LogValuer: without it slog's JSON handler would
// marshal the string itself.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText implements encoding.TextMarshaler, for encoding/json and
// slog's text handler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }

// URL is an absolute http or https URL.
type URL struct{ *url.URL }

// LogValue implements slog.LogValuer: a password in the URL logs as xxxxx.
func (u URL) LogValue() slog.Value {
	if u.URL == nil {
		return slog.StringValue("")
	}
	return slog.StringValue(u.Redacted())
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (u *URL) UnmarshalText(b []byte) error {
	raw := string(b)
	if !strings.Contains(raw, "://") && raw != "" {
		// host:port/path: url.Parse takes host for a scheme, or says
		// "first path segment in URL cannot contain colon".
		return fmt.Errorf("want an absolute URL that starts with http:// or https://, such as %q", Redact("http://"+raw))
	}
	parsed, err := url.Parse(raw)
	if err != nil {
		// Not the URL itself: it may hold a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("not a URL (%w); want one such as http://127.0.0.1:8100/metrics", err)
	}
	if parsed.Scheme != "http" && parsed.Scheme != "https" {
		return fmt.Errorf("scheme must be http or https, not %q; want a URL such as http://127.0.0.1:8100/metrics", parsed.Scheme)
	}
	if parsed.Host == "" {
		return fmt.Errorf("no host; want a URL such as http://127.0.0.1:8100/metrics")
	}
	u.URL = parsed
	return nil
}

// ByteSize is a size in bytes, written as a plain number or with a unit:
// B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	factor := int64(1)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, factor = strings.TrimSpace(num), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("invalid size %q: want a whole number of bytes, optionally with a unit such as MiB or GiB", string(text))
	}
	if n > math.MaxInt64/factor {
		return fmt.Errorf("size %q is too large", string(text))
	}
	*b = ByteSize(n * factor)
	return nil
}

// Redact returns raw with the password of a URL's user information
// replaced by xxxxx, as url.URL.Redacted does, so that a setting's value
// can be quoted in a log line or an error; anything else is returned as it
// is. A value that does not parse as a URL loses everything before its last
// @, since where a password ends cannot be told.
func Redact(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return u.Redacted()
	}
	if !strings.Contains(raw, "@") {
		return raw
	}
	prefix, rest := "", raw
	if scheme, after, ok := strings.Cut(raw, "://"); ok {
		prefix, rest = scheme+"://", after
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		return prefix + "xxxxx" + rest[i:]
	}
	return raw
}

// CheckListenAddr checks that addr is what net.Listen("tcp", addr) takes
// for a listener: an optional host and a numeric port, such as :9542 or
// 127.0.0.1:9542.
func CheckListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		example := ":9542"
		if _, err := strconv.ParseUint(addr, 10, 16); err == nil {
			example = ":" + addr // a port alone
		}
		why := err.Error()
		var ae *net.AddrError
		if errors.As(err, &ae) {
			why = ae.Err // not the address again
		}
		return fmt.Errorf("want [host]:port, such as %q (every interface) or %q (%s)", example, "127.0.0.1"+example, why)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535; want [host]:port, such as \":9542\"", port)
	}
	return nil
}
