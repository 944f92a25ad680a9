package e2e_test

import (
	"fmt"
	"strings"
	"testing"
)

func TestRescales(t *testing.T) {
	ev := func(seq uint64, reason, msg string, count int32) hpaEvent {
		return hpaEvent{name: fmt.Sprintf("command.%x", seq), reason: reason, message: msg, count: count, seq: seq}
	}
	cases := []struct {
		name    string
		events  []hpaEvent
		want    string
		wantErr string
	}{
		{
			name: "the tutorial's",
			events: []hpaEvent{
				ev(1, reasonRescale, "New size: 3; reason: Service metric kong_upstream_latency_ms_60s_average above target", 1),
				ev(2, reasonFailedMetric, "unable to get metric", 4),
				ev(3, reasonRescale, "New size: 10; reason: Service metric kong_upstream_latency_ms_60s_average above target", 1),
				ev(4, reasonRescale, "New size: 1; reason: All metrics below target", 1),
			},
			want: "[3 (Service metric kong_upstream_latency_ms_60s_average above target) 10 (Service metric kong_upstream_latency_ms_60s_average above target) 1 (All metrics below target)]",
		},
		{
			name: "aggregated by the recorder",
			events: []hpaEvent{
				ev(1, reasonRescale, "New size: 9; reason: All metrics below target", 1),
				ev(2, reasonRescale, "(combined from similar events): New size: 1; reason: All metrics below target", 3),
			},
			want: "[9 (All metrics below target) 1 (All metrics below target)]",
		},
		{name: "a repeated size", events: []hpaEvent{ev(1, reasonRescale, "New size: 10; reason: x above target", 2)}, wantErr: "occurred 2 times"},
		{name: "another message", events: []hpaEvent{ev(1, reasonRescale, "New size is 10", 1)}, wantErr: "is not"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rescales(tc.events)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := fmt.Sprint(got); s != tc.want {
				t.Errorf("rescales %s, want %s", s, tc.want)
			}
		})
	}
}

func TestEventCountsSince(t *testing.T) {
	before := []hpaEvent{
		{name: "command.1", reason: reasonFailedMetric, count: 3},
		{name: "command.2", reason: reasonRescale, count: 1},
	}
	after := []hpaEvent{
		{name: "command.1", reason: reasonFailedMetric, count: 4}, // occurred again
		{name: "command.2", reason: reasonRescale, count: 1},
		{name: "command.3", reason: reasonRescale, count: 1}, // new
	}
	base := snapshot(before)
	if got := base.since(after, reasonFailedMetric); len(got) != 1 || got[0].name != "command.1" {
		t.Errorf("FailedGetObjectMetric since: %v, want command.1 (its count rose)", got)
	}
	if got := base.since(after, reasonRescale); len(got) != 1 || got[0].name != "command.3" {
		t.Errorf("SuccessfulRescale since: %v, want command.3 (new)", got)
	}
	if got := base.since(before, reasonRescale); len(got) != 0 {
		t.Errorf("nothing happened, yet since: %v", got)
	}
}
