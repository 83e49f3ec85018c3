package consumer

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"moviestream/services/billing/internal/order"
)

// Reasons of moviestream_dead_lettered_total: a closed set of classes,
// never an error's text.
const (
	ReasonInvalidOrder       = "invalid_order"        // the message can never be an order
	ReasonRejectedByDatabase = "rejected_by_database" // the database refused the order itself
	ReasonKeyReused          = "key_reused"           // the key names another order of the user
	ReasonPublishFailed      = "publish_failed"       // our copy to the DLQ was not confirmed: rejected instead
)

var reasons = []string{ReasonInvalidOrder, ReasonRejectedByDatabase, ReasonKeyReused, ReasonPublishFailed}

// reasonOf maps a dead-letter error to its class. Only order.FromMessage's
// errors (billingmsg.ErrInvalid) reach the default.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, order.ErrKeyReused):
		return ReasonKeyReused
	case errors.Is(err, order.ErrRejected):
		return ReasonRejectedByDatabase
	}
	return ReasonInvalidOrder
}

// Metrics is what the consumer reports to Prometheus: commits, dead
// letters, and whether it consumes and whether it holds writes. It is
// built in main from the service's registry and passed in Config; a nil
// *Metrics records nothing.
type Metrics struct {
	written, duplicate prometheus.Counter
	deadLettered       map[string]prometheus.Counter
	batchSize, commit  prometheus.Histogram
	connected, held    prometheus.Gauge
}

// NewMetrics registers billing's series on reg, every dead-letter reason
// at 0 from the start.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	dead := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moviestream_dead_lettered_total",
		Help: "Messages billing moved to the dead-letter queue, by reason class.",
	}, []string{"reason"})
	m := &Metrics{
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "moviestream_orders_written_total",
			Help: "Orders inserted into the orders table (committed).",
		}),
		duplicate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "moviestream_orders_duplicate_total",
			Help: "Orders absorbed as redeliveries or retries of an order already written.",
		}),
		deadLettered: make(map[string]prometheus.Counter, len(reasons)),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "moviestream_batch_size",
			Help:    "Orders per committed transaction.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500},
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "moviestream_batch_commit_duration_seconds",
			Help:    "Time to write and commit one batch of orders (successful attempts).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "moviestream_consumer_connected",
			Help: "1 while billing is subscribed to its queue, else 0.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "moviestream_writes_held",
			Help: "1 while billing holds writes because the database refuses them, else 0.",
		}),
	}
	for _, r := range reasons {
		m.deadLettered[r] = dead.WithLabelValues(r)
	}
	reg.MustRegister(m.written, m.duplicate, dead, m.batchSize, m.commit, m.connected, m.held)
	return m
}

// committed records one committed batch of size orders.
func (m *Metrics) committed(size int, saved order.Saved, took time.Duration) {
	if m == nil {
		return
	}
	m.written.Add(float64(saved.Inserted))
	if dup := size - int(saved.Inserted) - len(saved.Reused); dup > 0 {
		m.duplicate.Add(float64(dup))
	}
	m.batchSize.Observe(float64(size))
	m.commit.Observe(took.Seconds())
}

func (m *Metrics) deadLetter(reason string) {
	if m != nil {
		m.deadLettered[reason].Inc()
	}
}

func (m *Metrics) setConnected(on bool) {
	if m != nil {
		m.connected.Set(b2f(on))
	}
}

func (m *Metrics) setHeld(on bool) {
	if m != nil {
		m.held.Set(b2f(on))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
