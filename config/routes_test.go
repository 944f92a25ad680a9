package config

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/filewatch"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func file(data []byte, err error) filewatch.File {
	if err != nil {
		return filewatch.File{Err: err}
	}
	return filewatch.File{Data: data, Sum: sha256.Sum256(data)}
}

// resolvesTo rewrites one kong_http_requests_total line of Kong service
// kong with s's configuration in use and returns the kubernetes_name it
// got, or the drop reason.
func resolvesTo(t *testing.T, s *Store, kong string) string {
	t.Helper()
	p := s.Load().Rewriter.NewPage()
	out := p.AppendLine(nil, []byte(`kong_http_requests_total{service="`+kong+`",code="200"} 1`))
	if len(out) == 0 {
		for _, r := range relabel.DropReasons {
			if p.Stats().Dropped[r] > 0 {
				return r.String()
			}
		}
	}
	_, name, _ := strings.Cut(string(out), `kubernetes_name="`)
	name, _, _ = strings.Cut(name, `"`)
	return name
}

// TestRouteMapping: the route mapping resolves route rule names, marks
// multi-backend rules, is read gzip-compressed or plain, sits below the
// extension file's own mappings, and a missing or invalid route mapping
// keeps the one in use.
func TestRouteMapping(t *testing.T) {
	ext := []byte(`apiVersion: gateway-operator.konghq.com/v1alpha1
kind: DataPlaneMetricsExtension
metadata: {name: kong, namespace: kong}
spec:
  serviceSelector: {matchNames: [{name: command}, {name: billing}]}
  config: {statusCode: true}
---
apiVersion: kong-metrics-sidecar.io/v1alpha1
kind: KongServiceMapping
metadata: {name: mine, namespace: kong}
spec:
  services:
  - {kongService: httproute.kong.pinned.0, namespace: kong, name: billing}
`)
	routes := []byte(`{"apiVersion":"kong-metrics-sidecar.io/v1alpha1","kind":"KongServiceMapping","metadata":{"name":"routes"},"spec":{"services":[` +
		`{"kongService":"httproute.kong.command.0","namespace":"kong","name":"command"},` +
		`{"kongService":"httproute.kong.pinned.0","namespace":"kong","name":"command"}],"multiBackend":["httproute.kong.split.0"]}}`)
	routes2 := []byte(`{"apiVersion":"kong-metrics-sidecar.io/v1alpha1","kind":"KongServiceMapping","metadata":{"name":"routes"},"spec":{"services":[` +
		`{"kongService":"httproute.kong.command.1","namespace":"kong","name":"command"}]}}`)
	notFound := &fs.PathError{Op: "open", Path: "routes.json.gz", Err: fs.ErrNotExist}

	logs := &lockedBuffer{}
	reg := prometheus.NewRegistry()
	s := NewStore("config.yaml", StoreOptions{RoutesFile: "routes.json.gz"}, reg, slog.New(slog.NewTextHandler(logs, nil)))
	steps := []struct {
		name       string
		routes     filewatch.File
		wantErr    bool
		want       map[string]string // Kong service → kubernetes_name or drop reason
		successful float64
	}{
		{"no route mapping yet", file(nil, notFound), false,
			map[string]string{"httproute.kong.command.0": "unresolved", "httproute.kong.pinned.0": "billing"}, 1},
		{"gzip", file(gzipped(t, routes), nil), false,
			map[string]string{"httproute.kong.command.0": "command", "httproute.kong.pinned.0": "billing", "httproute.kong.split.0": "multi_backend"}, 1},
		{"garbage keeps it", file([]byte("\x1f\x8bnot gzip"), nil), true,
			map[string]string{"httproute.kong.command.0": "command"}, 0},
		{"services selected keeps it", file(ext, nil), true,
			map[string]string{"httproute.kong.command.0": "command"}, 0},
		{"missing keeps it", file(nil, notFound), false,
			map[string]string{"httproute.kong.command.0": "command", "httproute.kong.split.0": "multi_backend"}, 1},
		{"plain JSON replaces it", file(routes2, nil), false,
			map[string]string{"httproute.kong.command.0": "unresolved", "httproute.kong.command.1": "command", "httproute.kong.split.0": "unresolved"}, 1},
	}
	for _, step := range steps {
		err := s.deliver(file(ext, nil), &step.routes)
		if (err != nil) != step.wantErr {
			t.Fatalf("%s: deliver: %v, want an error: %v", step.name, err, step.wantErr)
		}
		for kong, want := range step.want {
			if got := resolvesTo(t, s, kong); got != want {
				t.Errorf("%s: %s resolves to %q, want %q", step.name, kong, got, want)
			}
		}
		if got := testutil.ToFloat64(s.routes.lastSuccessful); got != step.successful {
			t.Errorf("%s: route_mapping_last_reload_successful = %v, want %v", step.name, got, step.successful)
		}
	}
	if n := strings.Count(logs.String(), "route mapping rejected"); n != 2 {
		t.Errorf("%d rejections logged, want 2:\n%s", n, logs)
	}
}

// TestWatcherFollowsRouteMapping: the Watcher hands the route mapping file
// to the Store beside the extension file.
func TestWatcherFollowsRouteMapping(t *testing.T) {
	dir := t.TempDir()
	extPath, routesPath := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "routes", "routes.json.gz")
	if err := os.WriteFile(extPath, extension("kong", "statusCode", "command"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := NewStore(extPath, StoreOptions{RoutesFile: routesPath}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	w := NewWatcher(s, WatchOptions{})
	ctx := t.Context()
	go w.Run(ctx)
	if err := w.Reload(ctx); err != nil {
		t.Fatalf("Reload with no route mapping: %v", err)
	}
	if s.Load().Routes != nil {
		t.Fatal("a route mapping in use before the file exists")
	}
	if err := os.MkdirAll(filepath.Dir(routesPath), 0o755); err != nil {
		t.Fatal(err)
	}
	routes := []byte(`{"apiVersion":"kong-metrics-sidecar.io/v1alpha1","kind":"KongServiceMapping","metadata":{"name":"routes"},"spec":{"services":[{"kongService":"httproute.kong.command.0","namespace":"kong","name":"command"}]}}`)
	if err := os.WriteFile(routesPath, gzipped(t, routes), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := resolvesTo(t, s, "httproute.kong.command.0"); got != "command" {
		t.Errorf("httproute.kong.command.0 resolves to %q after the route mapping appeared, want command", got)
	}
}
