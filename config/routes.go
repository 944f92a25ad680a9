package config

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// MaxRoutesBytes bounds the route mapping once decompressed: a ConfigMap
// holds at most 1 MiB, which gzip turns into at most a few tens of MiB of
// such a document; more is not one the injector wrote.
const MaxRoutesBytes = 64 << 20

// routeState is the Store's part for the route mapping file; the Store's
// mu protects it.
type routeState struct {
	badKey string // the hash or error of the content rejected last, to log and count it once

	lastSuccessful prometheus.Gauge
	kongServices   prometheus.Gauge
}

func newRouteState(reg prometheus.Registerer) *routeState {
	r := &routeState{
		lastSuccessful: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_sidecar_route_mapping_last_reload_successful",
			Help: "Whether the last read of the route mapping file succeeded (1) or failed (0); a missing file is no mapping, not a failure.",
		}),
		kongServices: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kong_metrics_sidecar_route_mapping_kong_services",
			Help: "Kong service names (HTTPRoute and GRPCRoute rules) the route mapping in use resolves or marks as multi-backend.",
		}),
	}
	r.lastSuccessful.Set(1)
	reg.MustRegister(r.lastSuccessful, r.kongServices)
	return r
}

// ParseRoutes validates a route mapping file's content: KongServiceMapping
// documents only, as JSON or YAML, gzip-compressed or not.
func ParseRoutes(data []byte) (*Extension, error) {
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("not gzip: %w", err)
		}
		plain, err := io.ReadAll(io.LimitReader(zr, MaxRoutesBytes+1))
		if err != nil {
			return nil, fmt.Errorf("decompressing: %w", err)
		}
		if len(plain) > MaxRoutesBytes {
			return nil, fmt.Errorf("more than %d bytes once decompressed", MaxRoutesBytes)
		}
		data = plain
	}
	routes, err := ParseExtension(data)
	if err != nil {
		return nil, err
	}
	if len(routes.Selection.Services) > 0 {
		return nil, errors.New("selects Services: a route mapping holds KongServiceMapping documents only")
	}
	return routes, nil
}

// applyRoutes is apply for the route mapping file. A file that is missing
// keeps the mapping in use (none before one was read); invalid content
// keeps it too, logged and counted once while it stays.
func (s *Store) applyRoutes(data []byte, sum [sha256.Size]byte, err error) error {
	r := s.routes
	cur := s.Load()
	if errors.Is(err, fs.ErrNotExist) {
		r.lastSuccessful.Set(1)
		if cur.Routes != nil && r.badKey != "missing" {
			s.logger.Warn("route mapping file is gone; keeping the route mapping in use", "path", s.opts.RoutesFile)
		}
		r.badKey = "missing"
		return nil
	}
	if err != nil {
		return s.routesFailed(fmt.Errorf("reading route mapping file: %w", err), "error:"+err.Error())
	}
	hash := hex.EncodeToString(sum[:])
	if cur.Routes != nil && cur.Routes.Hash == hash {
		r.badKey = ""
		r.lastSuccessful.Set(1)
		return nil
	}
	routes, err := ParseRoutes(data)
	if err != nil {
		return s.routesFailed(fmt.Errorf("route mapping file %s: %w", s.opts.RoutesFile, err), hash)
	}
	routes.Hash = hash // of the bytes read, compressed or not
	s.publish(cur.Extension, routes)
	r.badKey = ""
	r.lastSuccessful.Set(1)
	r.kongServices.Set(float64(len(routes.Selection.Mappings) + len(routes.Selection.MultiBackend)))
	s.logger.Info("route mapping loaded", "path", s.opts.RoutesFile, "sha256", hash,
		"mappings", len(routes.Selection.Mappings), "multi_backend", len(routes.Selection.MultiBackend))
	return nil
}

func (s *Store) routesFailed(err error, key string) error {
	s.routes.lastSuccessful.Set(0)
	if key != s.routes.badKey {
		s.routes.badKey = key
		s.logger.Error("route mapping rejected; keeping the route mapping in use", "path", s.opts.RoutesFile, "err", err)
	}
	return err
}

// publish makes ext (nil: none yet) with routes (nil: none) the
// configuration in use.
func (s *Store) publish(ext, routes *Extension) {
	s.current.Store(&Snapshot{Rewriter: relabel.New(mergeSelection(ext, routes, s.opts.OnUnresolved)), Extension: ext, Routes: routes})
}

// Merge is the Selection a Store uses for ext with routes (either may be
// nil): routes' mappings below ext's own.
func Merge(ext, routes *Extension) relabel.Selection { return mergeSelection(ext, routes, nil) }

// mergeSelection is the Selection of ext with routes' mappings below its
// own: an explicit KongServiceMapping in the extension file wins.
func mergeSelection(ext, routes *Extension, onUnresolved func(string)) relabel.Selection {
	var sel relabel.Selection
	if ext != nil {
		sel = ext.Selection
	}
	if routes != nil {
		mappings := maps.Clone(routes.Selection.Mappings)
		maps.Copy(mappings, sel.Mappings)
		multi := maps.Clone(routes.Selection.MultiBackend)
		if multi == nil {
			multi = map[string]struct{}{}
		}
		maps.Copy(multi, sel.MultiBackend)
		sel.Mappings, sel.MultiBackend = mappings, multi
	}
	sel.OnUnresolved = onUnresolved
	return sel
}
