package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"moviestream/pkg/broker"
	"moviestream/services/billing/internal/dlq"
)

func TestParseArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		want    command
		wantErr bool
	}{
		{name: "list", args: []string{"list"}, want: command{name: "list"}},
		{name: "replay everything", args: []string{"replay"}, want: command{name: "replay"}},
		{
			name: "replay with every flag",
			args: []string{"replay", "-reason", "malformed body", "-reason", "delivery_limit", "-id", "a, b,,c", "-id", "d", "-max", "3", "-dry-run"},
			want: command{name: "replay", dryRun: true, filter: dlq.Filter{
				Reasons: []string{"malformed body", "delivery_limit"}, IDs: []string{"a", "b", "c", "d"}, Max: 3,
			}},
		},
		{name: "no command", args: nil, wantErr: true},
		{name: "unknown command", args: []string{"purge"}, wantErr: true},
		{name: "help", args: []string{"-h"}, wantErr: true},
		{name: "list takes no filter", args: []string{"list", "-reason", "x"}, wantErr: true},
		{name: "negative max", args: []string{"replay", "-max", "-1"}, wantErr: true},
		{name: "empty reason", args: []string{"replay", "-reason", ""}, wantErr: true},
		{name: "stray argument", args: []string{"replay", "extra"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseArgs(tt.args)
			if tt.wantErr {
				if !errors.Is(err, errUsage) {
					t.Fatalf("parseArgs(%q) = %+v, %v; want a usage error", tt.args, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tt.args, err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(command{})); diff != "" {
				t.Errorf("parseArgs(%q) (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}

func TestPrintGroups(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	err := printGroups(&out, "billing_queue.dlq", []dlq.Group{
		{Reason: "invalid order message: malformed body", Count: 2, First: at, Last: at.Add(time.Hour), SampleID: "m-1"},
		{Reason: "bad\x00id", Count: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `billing_queue.dlq: 3 message(s)
COUNT  FIRST                 LAST                  SAMPLE_ID  REASON
2      2025-03-01T10:00:00Z  2025-03-01T11:00:00Z  m-1        invalid order message: malformed body
1      -                     -                     -          "bad\x00id"
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}

func TestPrintReport(t *testing.T) {
	t.Parallel()
	topo := broker.Topology{Queue: "billing_queue"}
	rep := dlq.Report{Moved: []dlq.Message{{ID: "a", Reason: "rejected"}, {Reason: "unknown"}}, Kept: 4}
	for _, tt := range []struct {
		name   string
		dryRun bool
		want   []string
	}{
		{"replay", false, []string{"moved message_id=a reason=rejected", "moved message_id=- reason=unknown",
			"no message_id", "replayed 2 message(s) from billing_queue.dlq to billing_queue, 4 left in place", "deduplicates on message_id"}},
		{"dry run", true, []string{"would move message_id=a", "dry run: 2 message(s) would move", "nothing moved"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			printReport(&out, topo, rep, tt.dryRun)
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if tt.dryRun && strings.Contains(out.String(), "replayed") {
				t.Errorf("dry run claims a replay:\n%s", out.String())
			}
		})
	}
}
