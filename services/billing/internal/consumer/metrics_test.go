package consumer_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"moviestream/pkg/broker/brokertest"
	"moviestream/pkg/testenv"
	"moviestream/services/billing/internal/consumer"
	"moviestream/services/billing/internal/orderdb"
)

// TestMetricsAndRequestID: written, duplicate and dead-lettered orders are
// counted with the reason's class, the gauges follow the consumer, and the
// gateway's request id (correlation_id) is on the dead-letter log line and
// kept on the DLQ copy.
func TestMetricsAndRequestID(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	reg := prometheus.NewRegistry()
	logs := &testenv.LogBuffer{}
	_, stop := r.run(t, orderdb.New(r.db), consumer.Config{Metrics: consumer.NewMetrics(reg)},
		slog.New(slog.NewJSONHandler(logs, nil)))

	poison := msg("poison-1", `{"user_id":"","number_of_items":1,"total_amount":1}`)
	poison.CorrelationId = "req-poison-1"
	brokertest.Publish(t, r.cfg, r.topo.Queue, msg("a", valid), msg("a", valid), msg("b", valid), poison)
	testenv.WaitFor(t, 10*time.Second, "orders and dead letter", func() bool {
		return r.count(t, "true") == 2 && brokertest.Depth(t, r.ch, r.topo.DeadLetterQueue()) == 1
	})
	testenv.WaitFor(t, 10*time.Second, "duplicate counted", func() bool {
		return value(t, reg, "moviestream_orders_duplicate_total") == 1
	})

	want := `
# HELP moviestream_consumer_connected 1 while billing is subscribed to its queue, else 0.
# TYPE moviestream_consumer_connected gauge
moviestream_consumer_connected 1
# HELP moviestream_dead_lettered_total Messages billing moved to the dead-letter queue, by reason class.
# TYPE moviestream_dead_lettered_total counter
moviestream_dead_lettered_total{reason="invalid_order"} 1
moviestream_dead_lettered_total{reason="key_reused"} 0
moviestream_dead_lettered_total{reason="publish_failed"} 0
moviestream_dead_lettered_total{reason="rejected_by_database"} 0
# HELP moviestream_orders_written_total Orders inserted into the orders table (committed).
# TYPE moviestream_orders_written_total counter
moviestream_orders_written_total 2
# HELP moviestream_writes_held 1 while billing holds writes because the database refuses them, else 0.
# TYPE moviestream_writes_held gauge
moviestream_writes_held 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "moviestream_consumer_connected",
		"moviestream_dead_lettered_total", "moviestream_orders_written_total", "moviestream_writes_held"); err != nil {
		t.Error(err)
	}
	stop()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP moviestream_consumer_connected 1 while billing is subscribed to its queue, else 0.
# TYPE moviestream_consumer_connected gauge
moviestream_consumer_connected 0
`), "moviestream_consumer_connected"); err != nil {
		t.Errorf("after stop: %v", err)
	}

	if d := brokertest.Get(t, r.ch, r.topo.DeadLetterQueue(), 5*time.Second); d.CorrelationId != "req-poison-1" {
		t.Errorf("DLQ copy correlation_id = %q, want req-poison-1", d.CorrelationId)
	}
	if n := logs.Count(`"msg":"message dead-lettered","message_id":"poison-1","request_id":"req-poison-1"`); n != 1 {
		t.Errorf("dead-letter log lines with message_id and request_id = %d, want 1:\n%s", n, logs.String())
	}
	if n := logs.Count(`"reason_class":"invalid_order"`); n != 1 {
		t.Errorf("dead-letter log lines with reason_class invalid_order = %d, want 1", n)
	}
}

// value reads the single counter or gauge called name from reg.
func value(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
