package billingapi

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"moviestream/pkg/broker"
)

// Outcomes of an order, the values of moviestream_publish_total's label.
const (
	OutcomeConfirmed   = "confirmed"
	OutcomeNacked      = "nacked"
	OutcomeReturned    = "returned"
	OutcomeTimeout     = "timeout"
	OutcomeUnavailable = "unavailable"
	OutcomeInvalid     = "invalid"
)

var outcomes = []string{OutcomeConfirmed, OutcomeNacked, OutcomeReturned, OutcomeTimeout, OutcomeUnavailable, OutcomeInvalid}

// Metrics counts what became of each order and times confirmed publishes.
// A nil *Metrics records nothing.
type Metrics struct {
	outcome map[string]prometheus.Counter // every outcome, resolved once
	confirm prometheus.Histogram
}

// NewMetrics registers moviestream_publish_total{outcome} (every outcome
// at 0 from the start, so rate() works from the first scrape) and
// moviestream_publish_confirm_duration_seconds on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	total := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moviestream_publish_total",
		Help: "Orders received by POST /api/billing, by outcome: confirmed, nacked, returned, timeout, unavailable, invalid.",
	}, []string{"outcome"})
	m := &Metrics{
		outcome: make(map[string]prometheus.Counter, len(outcomes)),
		confirm: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "moviestream_publish_confirm_duration_seconds",
			Help:    "Time from publishing an order to RabbitMQ's confirm, for confirmed publishes.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	for _, o := range outcomes {
		m.outcome[o] = total.WithLabelValues(o)
	}
	reg.MustRegister(total, m.confirm)
	return m
}

// invalid records an order refused before publishing.
func (m *Metrics) invalid() {
	if m != nil {
		m.outcome[OutcomeInvalid].Inc()
	}
}

// published records the result of one Publish call that took d.
func (m *Metrics) published(err error, d time.Duration) {
	if m == nil {
		return
	}
	o := Outcome(err)
	m.outcome[o].Inc()
	if o == OutcomeConfirmed {
		m.confirm.Observe(d.Seconds())
	}
}

// Outcome classifies the error of a publish. The broker's errors all wrap
// broker.ErrUnavailable, so the specific ones are tested first.
func Outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeConfirmed
	case errors.Is(err, broker.ErrNacked):
		return OutcomeNacked
	case errors.Is(err, broker.ErrUnroutable):
		return OutcomeReturned
	case errors.Is(err, context.DeadlineExceeded):
		return OutcomeTimeout
	}
	return OutcomeUnavailable // broker.ErrUnavailable, blocked, or anything else
}
