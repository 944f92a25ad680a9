package harness

import (
	"maps"
	"testing"
)

func TestLogAttrs(t *testing.T) {
	for _, tc := range []struct {
		line string
		want map[string]string
	}{
		{`time=2026-12-01T20:22:21.739Z level=INFO msg=serving addr=127.0.0.1:40977 upstream=http://127.0.0.1:8100/metrics` + "\n",
			map[string]string{"time": "2026-12-01T20:22:21.739Z", "level": "INFO", "msg": "serving", "addr": "127.0.0.1:40977", "upstream": "http://127.0.0.1:8100/metrics"}},
		{`level=INFO msg="Listening on" address=127.0.0.1:40977`,
			map[string]string{"level": "INFO", "msg": "Listening on", "address": "127.0.0.1:40977"}},
		{`msg=Listening listener=proxy addr=127.0.0.1:45793 err="a \"quoted\" = sign"`,
			map[string]string{"msg": "Listening", "listener": "proxy", "addr": "127.0.0.1:45793", "err": `a "quoted" = sign`}},
		{`{"level":"INFO","msg":"serving","addr":"127.0.0.1:33177","n":3}`,
			map[string]string{"level": "INFO", "msg": "serving", "addr": "127.0.0.1:33177"}},
		{"panic: something went wrong", nil},
		{`{"msg":`, nil},
		{"", map[string]string{}},
	} {
		if got := logAttrs(tc.line); !maps.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("logAttrs(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}
