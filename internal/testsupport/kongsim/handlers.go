package kongsim

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxSleep bounds the sleep command; Kong's default upstream read timeout
// is 60 seconds.
const maxSleep = 60 * time.Second

// statusClientClosed is nginx's status for a request whose client went away
// before the response.
const statusClientClosed = 499

// ProxyHandler returns the handler for Kong's proxy listener. It routes a
// request by the longest matching service path prefix and answers as that
// service's upstream would, then records the request like Kong's log phase:
//
//   - cmd=sleep <seconds> in the query (the tutorial's command service:
//     GET /command/shell?cmd=sleep%200.1) sleeps that long (Config.Sleep),
//     then answers 200; the sleep asked for is the recorded upstream
//     latency, in whole ms, not the time the timer took to fire, so that
//     the metrics are exact however loaded the machine is. A client
//     that leaves during the sleep is recorded as 499 without upstream
//     latency, as nginx and Kong do.
//   - any other cmd is answered 400 by the upstream; no cmd is answered 200
//     at once.
//   - a path no service matches gets Kong's own 404, which Kong does not
//     record, because the plugin records nothing without a service.
func (s *Simulator) ProxyHandler() http.Handler {
	return http.HandlerFunc(s.serveProxy)
}

func (s *Simulator) serveProxy(w http.ResponseWriter, r *http.Request) {
	svc := s.match(r.URL.Path)
	h := w.Header()
	h.Set("Via", "1.1 kong/"+s.cfg.Version)
	if svc == nil {
		h.Set("X-Kong-Response-Latency", "0")
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "no Route matched with those values"})
		return
	}
	kongMs := int(s.cfg.KongLatency / time.Millisecond)
	code, body, slept := s.runCommand(r.Context(), r.URL.Query().Get("cmd"))
	upstreamMs := int(slept / time.Millisecond)
	rec := Request{
		Service:   svc.Name,
		Route:     svc.Route,
		Workspace: svc.Workspace,
		Code:      code,
		Source:    SourceService,
		RequestMs: upstreamMs + kongMs,
		KongMs:    kongMs,
		BytesIn:   requestSize(r),
	}
	if code == statusClientClosed {
		// No response started, so Kong has no upstream latency and
		// nothing was sent.
		rec.UpstreamMs = -1
		s.Record(rec)
		return
	}
	rec.UpstreamMs = upstreamMs
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Kong-Upstream-Latency", strconv.Itoa(upstreamMs))
	h.Set("X-Kong-Proxy-Latency", strconv.Itoa(kongMs))
	rec.BytesOut = responseSize(code, h, len(body))
	w.WriteHeader(code)
	_, _ = w.Write(body) // the client may be gone; Kong logs the request anyway
	s.Record(rec)
}

// match returns the service whose path prefix matches path, longest first.
func (s *Simulator) match(path string) *Service {
	for _, svc := range s.byPrefix {
		if strings.HasPrefix(path, svc.PathPrefix) {
			return svc
		}
	}
	return nil
}

// runCommand plays the tutorial's command service and returns how long it
// slept.
func (s *Simulator) runCommand(ctx context.Context, cmd string) (code int, body []byte, slept time.Duration) {
	if cmd == "" {
		return http.StatusOK, commandBody(cmd, 0, ""), 0
	}
	fields := strings.Fields(cmd)
	if len(fields) != 2 || fields[0] != "sleep" {
		return http.StatusBadRequest, commandBody(cmd, 1, "only \"sleep <seconds>\" is supported"), 0
	}
	secs, err := strconv.ParseFloat(fields[1], 64)
	if err != nil || math.IsNaN(secs) || secs < 0 || secs > maxSleep.Seconds() {
		return http.StatusBadRequest, commandBody(cmd, 1, fmt.Sprintf("invalid time interval %q", fields[1])), 0
	}
	d := time.Duration(secs * float64(time.Second))
	if err := s.sleep(ctx, d); err != nil {
		return statusClientClosed, nil, 0
	}
	return http.StatusOK, commandBody(cmd, 0, ""), d
}

// sleep is Config.Sleep, or a real timer.
func (s *Simulator) sleep(ctx context.Context, d time.Duration) error {
	if s.cfg.Sleep != nil {
		return s.cfg.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func commandBody(cmd string, exitCode int, stderr string) []byte {
	b, err := json.Marshal(struct {
		Command  string `json:"command"`
		ExitCode int    `json:"exit_code"`
		Stdout   string `json:"stdout"`
		Stderr   string `json:"stderr"`
	}{cmd, exitCode, "", stderr})
	if err != nil {
		panic("BUG: kongsim: encoding a command result: " + err.Error())
	}
	return append(b, '\n')
}

// requestSize estimates nginx's $request_length: the request line, the
// header lines and the body.
func requestSize(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	n += len("Host: ") + len(r.Host) + 2
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	n += 2
	if r.ContentLength > 0 {
		n += int(r.ContentLength)
	}
	return n
}

// responseSize estimates nginx's $bytes_sent: the status line, the header
// lines (with the Date header the server adds) and the body.
func responseSize(code int, h http.Header, bodyLen int) int {
	n := len("HTTP/1.1 000 ") + len(http.StatusText(code)) + 2
	n += len("Date: Mon, 02 Jan 2006 15:04:05 GMT") + 2
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + 2 + bodyLen
}

// StatusHandler returns the handler for Kong's status listener:
//
//   - GET /metrics: the Prometheus plugin's body, text/plain;
//     charset=UTF-8, chunked in pieces of 100 lines, never compressed
//     whatever Accept-Encoding says, and the same whatever Accept says.
//   - GET /status: a small JSON document like Kong's.
//   - GET /status/ready: 200 {"message":"ready"}.
func (s *Simulator) StatusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", s.serveMetrics)
	mux.HandleFunc("/status", s.serveStatus)
	mux.HandleFunc("/status/ready", serveReady)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not found"})
	})
	return mux
}

func (s *Simulator) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	if r.Method == http.MethodHead {
		return
	}
	s.metricsFetches.Add(1)
	// A write error means the client went away; there is no one to tell.
	_ = s.WriteMetrics(flushWriter{w})
}

// flushWriter flushes every piece it writes, so the body goes out chunked
// in the pieces Kong sends.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, http.NewResponseController(f.w).Flush()
}

func (s *Simulator) serveStatus(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	server := map[string]float64{"total_requests": nginxTotalRequests}
	for _, st := range nginxStats {
		if st.state != "total" {
			server["connections_"+st.state] = st.value
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"configuration_hash": s.configHash(),
		"database":           map[string]bool{"reachable": true},
		"server":             server,
	})
}

// configHash is a stand-in for Kong's hash of its declarative configuration.
func (s *Simulator) configHash() string {
	h := md5.New()
	for _, svc := range s.cfg.Services {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00", svc.Name, svc.Route, svc.Upstream)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func serveReady(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "ready"})
}

func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"message": "Method not allowed"})
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("BUG: kongsim: encoding a JSON response: " + err.Error())
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n')) // the client may be gone
}

// MetricsFetches is how many GET /metrics the status listener has served.
func (s *Simulator) MetricsFetches() uint64 { return s.metricsFetches.Load() }

// StatsHandler returns the handler of the simulator's own counters, which
// Kong does not have, for a listener of their own so that Kong's listeners
// answer as Kong's: GET /stats is {"metrics_fetches":N}, the GET /metrics
// the status listener has served.
func (s *Simulator) StatsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]uint64{"metrics_fetches": s.MetricsFetches()})
	})
	return mux
}
