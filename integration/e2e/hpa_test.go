package e2e_test

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/integration/e2e/cluster"
)

// The HPA's event reasons the test follows.
const (
	reasonRescale      = "SuccessfulRescale"
	reasonFailedMetric = "FailedGetObjectMetric"
)

// hpaEvent is one of the HPA's events. seq orders them as the controller
// sent them: the recorder names an event <object>.<UnixNano in hex> when it
// first occurs, and counts repeats of the same message in count.
type hpaEvent struct {
	name, reason, message string
	count                 int32
	seq                   uint64
}

// hpaEvents lists the events of HPA kong/command, oldest first.
func hpaEvents(ctx context.Context, c *cluster.Cluster) ([]hpaEvent, error) {
	return hpaEventsOf(ctx, c, "command")
}

// hpaEventsOf lists the events of HPA kong/name, oldest first.
func hpaEventsOf(ctx context.Context, c *cluster.Cluster, name string) ([]hpaEvent, error) {
	list, err := c.Client.CoreV1().Events("kong").List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=" + name,
	})
	if err != nil {
		return nil, fmt.Errorf("listing the HPA's events: %w", err)
	}
	var out []hpaEvent
	for _, e := range list.Items {
		i := strings.LastIndexByte(e.Name, '.')
		seq, err := strconv.ParseUint(e.Name[i+1:], 16, 64)
		if i < 0 || err != nil {
			return nil, fmt.Errorf("event %s: not named <object>.<hex timestamp> as the recorder names events", e.Name)
		}
		out = append(out, hpaEvent{name: e.Name, reason: e.Reason, message: e.Message, count: e.Count, seq: seq})
	}
	slices.SortFunc(out, func(a, b hpaEvent) int { return cmp.Compare(a.seq, b.seq) })
	return out, nil
}

// eventCounts is a snapshot of the HPA's events: each one's count by name.
type eventCounts map[string]int32

func snapshot(events []hpaEvent) eventCounts {
	m := eventCounts{}
	for _, e := range events {
		m[e.name] = e.count
	}
	return m
}

// since returns the events of reason that are new since the snapshot or
// occurred again after it.
func (base eventCounts) since(events []hpaEvent, reason string) []hpaEvent {
	var out []hpaEvent
	for _, e := range events {
		if e.reason == reason && e.count > base[e.name] {
			out = append(out, e)
		}
	}
	return out
}

// rescale is a parsed SuccessfulRescale message.
type rescale struct {
	size   int
	reason string
}

var rescaleMessage = regexp.MustCompile(`^New size: (\d+); reason: (.+)$`)

// combinedPrefix opens the message of an event that client-go's recorder
// aggregates: from the 10th distinct message of one reason about one
// object within 10 minutes, it sends one event with the latest message
// after this prefix and counts the later ones up in it.
const combinedPrefix = "(combined from similar events): "

// rescales parses the SuccessfulRescale events among events, in order.
// Each must have occurred once: a repeat would mean the HPA came back to a
// size, which the tutorial's scaling never does. An aggregated event
// counts several sizes and is read for its latest.
func rescales(events []hpaEvent) ([]rescale, error) {
	var out []rescale
	for _, e := range events {
		if e.reason != reasonRescale {
			continue
		}
		msg, combined := strings.CutPrefix(e.message, combinedPrefix)
		m := rescaleMessage.FindStringSubmatch(msg)
		if m == nil {
			return nil, fmt.Errorf("SuccessfulRescale %q is not \"New size: N; reason: ...\"", e.message)
		}
		if e.count != 1 && !combined {
			return nil, fmt.Errorf("SuccessfulRescale %q occurred %d times", e.message, e.count)
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return nil, fmt.Errorf("SuccessfulRescale %q: %w", e.message, err)
		}
		out = append(out, rescale{size: n, reason: m[2]})
	}
	return out, nil
}

func (r rescale) String() string { return fmt.Sprintf("%d (%s)", r.size, r.reason) }

func replicas(ctx context.Context, c *cluster.Cluster) (spec, ready int32, err error) {
	d, err := c.Client.AppsV1().Deployments("kong").Get(ctx, "command", metav1.GetOptions{})
	if err != nil {
		return 0, 0, err
	}
	return *d.Spec.Replicas, d.Status.ReadyReplicas, nil
}

// step5ScaleUp waits for the tutorial's HPA to scale command to 10 at
// sleep 0.1, and checks the way there as the tutorial states it: every
// SuccessfulRescale "New size: N; reason: ... above target", the sizes
// strictly increasing, the last exactly 10. It returns the HPA's events
// then, against which the faults check that nothing rescales.
func step5ScaleUp(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster) eventCounts {
	t.Helper()
	var events []hpaEvent
	obs := w.waitFor(ctx, 120*time.Second, "command scaled to 10, the last SuccessfulRescale New size: 10", func() (bool, string) {
		spec, ready, err := replicas(ctx, c)
		if err != nil {
			return false, err.Error()
		}
		if events, err = hpaEvents(ctx, c); err != nil {
			return false, err.Error()
		}
		rs, err := rescales(events)
		if err != nil {
			t.Fatal(err)
		}
		last := 0
		if len(rs) > 0 {
			last = rs[len(rs)-1].size
		}
		return spec == 10 && ready == 10 && last == 10, fmt.Sprintf("replicas %d (ready %d); rescales %v", spec, ready, rs)
	})
	rs, err := rescales(events)
	if err != nil {
		t.Fatal(err)
	}
	prev := 1 // minReplicas, where command starts
	for _, r := range rs {
		if r.size <= prev || !strings.HasSuffix(r.reason, " above target") {
			t.Fatalf("scaling up: rescales %v; want sizes strictly increasing from 1 to exactly 10, every reason \"... above target\"", rs)
		}
		prev = r.size
	}
	w.step("step 5a passed: at sleep 0.1 the HPA scaled command up to 10, sizes %v, every reason \"above target\" (%s)", rs, obs)
	return snapshot(events)
}

// scalingActive is the HPA's ScalingActive condition: whether it could
// compute a scale from its metric, and if not, why. Unlike the events,
// which the recorder rate-limits, it is set at every sync.
func scalingActive(ctx context.Context, c *cluster.Cluster) (bool, string, error) {
	h, err := c.Client.AutoscalingV2().HorizontalPodAutoscalers("kong").Get(ctx, "command", metav1.GetOptions{})
	if err != nil {
		return false, "", err
	}
	for _, cond := range h.Status.Conditions {
		if cond.Type == autoscalingv2.ScalingActive {
			return cond.Status == corev1.ConditionTrue, cond.Reason, nil
		}
	}
	return false, "no ScalingActive condition", nil
}

// holdAt10 fails the test if command has left 10 replicas or the HPA
// rescaled since base; with noFailures, also if it failed to get the
// metric since base.
func holdAt10(ctx context.Context, t *testing.T, c *cluster.Cluster, base eventCounts, noFailures bool) string {
	t.Helper()
	spec, _, err := replicas(ctx, c)
	if err != nil {
		return err.Error()
	}
	events, err := hpaEvents(ctx, c)
	if err != nil {
		return err.Error()
	}
	if spec != 10 {
		t.Fatalf("command went from 10 to %d replicas", spec)
	}
	if rs := base.since(events, reasonRescale); len(rs) > 0 {
		t.Fatalf("the HPA rescaled: %q", rs[0].message)
	}
	if !noFailures {
		return fmt.Sprintf("replicas %d", spec)
	}
	if f := base.since(events, reasonFailedMetric); len(f) > 0 {
		t.Fatalf("the HPA could not get the metric: %q", f[0].message)
	}
	active, why, err := scalingActive(ctx, c)
	if err != nil {
		return err.Error()
	}
	if !active {
		t.Fatalf("the HPA's ScalingActive is not True: %s", why)
	}
	return fmt.Sprintf("replicas %d, ScalingActive", spec)
}

// step5ScaleDown switches the tutorial's traffic to sleep 0: the HPA's
// rescales from then on must have sizes strictly decreasing, every reason
// "All metrics below target", and end at exactly "New size: 1; reason: All
// metrics below target" (one step when the metric falls fast enough: the
// pods' scrapes reach Prometheus at different offsets, so a first sync may
// see only part of the fall). Then it stops the traffic: the metric reads
// 0 within about a minute (0/0, served as 0), and the HPA neither rescales
// nor fails to get the metric.
func step5ScaleDown(ctx context.Context, t *testing.T, w *world, c *cluster.Cluster, lb *serviceProxy, tr **traffic, base eventCounts) {
	t.Helper()
	ok, err := (*tr).stop()
	t.Logf("traffic at sleep 0.1: %d requests, error %v", ok, err)
	*tr = startTraffic(ctx, lb.URL, "0")
	var rs []rescale
	obs := w.waitFor(ctx, 180*time.Second, "command scaled back to 1", func() (bool, string) {
		spec, ready, err := replicas(ctx, c)
		if err != nil {
			return false, err.Error()
		}
		events, err := hpaEvents(ctx, c)
		if err != nil {
			return false, err.Error()
		}
		if rs, err = rescales(base.since(events, reasonRescale)); err != nil {
			t.Fatal(err)
		}
		prev := 10
		for _, r := range rs {
			if r.size >= prev || r.reason != "All metrics below target" {
				t.Fatalf("scaling down at sleep 0: rescales %v; want sizes strictly decreasing to exactly 1, every reason \"All metrics below target\"", rs)
			}
			prev = r.size
		}
		return spec == 1 && ready == 1 && prev == 1, fmt.Sprintf("replicas %d (ready %d); rescales since 10 %v", spec, ready, rs)
	})
	w.step("step 5b passed: at sleep 0 the HPA scaled command back to 1, sizes %v, the last New size: 1; reason: All metrics below target (%s)", rs, obs)

	// Traffic stopped entirely: the rule's rate over 60s becomes 0/0,
	// which prometheus-adapter serves as 0; the HPA stays at its minimum.
	ok, err = (*tr).stop()
	t.Logf("traffic at sleep 0: %d requests, error %v", ok, err)
	stopped := time.Now()
	events, err := hpaEvents(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(events)
	var zeroAt time.Time
	obs = w.waitFor(ctx, 150*time.Second, "with traffic stopped, the metric reads 0, then three HPA syncs pass", func() (bool, string) {
		list, code, err := customMetric(ctx, c)
		spec, _, rerr := replicas(ctx, c)
		if err != nil || rerr != nil {
			return false, fmt.Sprintf("HTTP %d: %v; replicas %d %v", code, err, spec, rerr)
		}
		if spec != 1 {
			t.Fatalf("with traffic stopped command went to %d replicas", spec)
		}
		if active, why, err := scalingActive(ctx, c); err != nil || !active {
			t.Fatalf("with traffic stopped the HPA's ScalingActive is not True: %s %v", why, err)
		}
		if len(list.Items) != 1 {
			return false, fmt.Sprintf("%d items", len(list.Items))
		}
		if list.Items[0].Value.IsZero() && zeroAt.IsZero() {
			zeroAt = time.Now()
		}
		return !zeroAt.IsZero() && time.Since(zeroAt) > 6*time.Second, fmt.Sprintf("value %s, replicas %d", list.Items[0].Value.String(), spec)
	})
	if events, err = hpaEvents(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{reasonRescale, reasonFailedMetric} {
		if e := before.since(events, reason); len(e) > 0 {
			t.Fatalf("with traffic stopped the HPA reported %s: %q", reason, e[0].message)
		}
	}
	w.step("step 5c passed: traffic stopped: metric 0 after %s (%s); ScalingActive True throughout; the HPA's events have no new SuccessfulRescale and no FailedGetObjectMetric",
		zeroAt.Sub(stopped).Round(time.Second), obs)
}
