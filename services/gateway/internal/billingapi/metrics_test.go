package billingapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/broker"
	"moviestream/pkg/ginweb"
	"moviestream/pkg/web"
	"moviestream/services/gateway/internal/billingapi"
)

func TestOutcome(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, billingapi.OutcomeConfirmed},
		{broker.ErrNacked, billingapi.OutcomeNacked},
		{fmt.Errorf("publish: %w", broker.ErrUnroutable), billingapi.OutcomeReturned},
		{fmt.Errorf("%w: waiting for confirm: %w", broker.ErrUnavailable, context.DeadlineExceeded), billingapi.OutcomeTimeout},
		{fmt.Errorf("%w: not connected", broker.ErrUnavailable), billingapi.OutcomeUnavailable},
		{broker.ErrBlocked, billingapi.OutcomeUnavailable},
		{errors.New("anything else"), billingapi.OutcomeUnavailable},
	} {
		if got := billingapi.Outcome(tt.err); got != tt.want {
			t.Errorf("Outcome(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestPostMetrics: every outcome is exported at 0 before any order, each
// order counts once under its outcome, only confirmed publishes are timed,
// and the request id travels as the message's correlation_id.
func TestPostMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := billingapi.NewMetrics(reg)
	if n := testutil.CollectAndCount(reg, "moviestream_publish_total"); n != 6 {
		t.Fatalf("publish_total series before any order = %d, want 6", n)
	}
	pub := &fakePublisher{}
	e, err := ginweb.NewEngine(discardLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.POST("/api/billing", billingapi.New(pub, publishTimeout, m).Post)

	req := httptest.NewRequest(http.MethodPost, "/api/billing", strings.NewReader(validBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(web.RequestIDHeader, "trace-me-42")
	e.ServeHTTP(httptest.NewRecorder(), req)
	post(t, e, request{body: validBody})
	post(t, e, request{body: `{"user_id":""}`}) // invalid
	pub.err = broker.ErrNacked
	post(t, e, request{body: validBody})

	want := `
# HELP moviestream_publish_total Orders received by POST /api/billing, by outcome: confirmed, nacked, returned, timeout, unavailable, invalid.
# TYPE moviestream_publish_total counter
moviestream_publish_total{outcome="confirmed"} 2
moviestream_publish_total{outcome="invalid"} 1
moviestream_publish_total{outcome="nacked"} 1
moviestream_publish_total{outcome="returned"} 0
moviestream_publish_total{outcome="timeout"} 0
moviestream_publish_total{outcome="unavailable"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "moviestream_publish_total"); err != nil {
		t.Error(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "moviestream_publish_confirm_duration_seconds" {
			if n := mf.GetMetric()[0].GetHistogram().GetSampleCount(); n != 2 {
				t.Errorf("confirm duration samples = %d, want 2 (confirmed publishes only)", n)
			}
		}
	}
	calls := pub.published()
	if len(calls) != 3 {
		t.Fatalf("published %d messages, want 3", len(calls))
	}
	if got := calls[0].msg.CorrelationId; got != "trace-me-42" {
		t.Errorf("correlation_id = %q, want the request's X-Request-ID", got)
	}
	if got := calls[1].msg.CorrelationId; len(got) != 32 {
		t.Errorf("correlation_id without a client id = %q, want the gateway's generated id", got)
	}
}

// BenchmarkPost measures order intake on the gateway's engine with an
// instant publisher: without metrics, and with the HTTP middleware and
// the publish metrics, as the gateway runs.
func BenchmarkPost(b *testing.B) {
	for _, withMetrics := range []bool{false, true} {
		name := "plain"
		if withMetrics {
			name = "metrics"
		}
		b.Run(name, func(b *testing.B) {
			var (
				opts []ginweb.Option
				m    *billingapi.Metrics
			)
			if withMetrics {
				reg := prometheus.NewRegistry()
				opts = append(opts, ginweb.WithMetrics(web.NewHTTPMetrics(reg, "gateway")))
				m = billingapi.NewMetrics(reg)
			}
			e, err := ginweb.NewEngine(discardLog(), nil, opts...)
			if err != nil {
				b.Fatal(err)
			}
			e.POST("/api/billing", billingapi.New(nopPublisher{}, time.Second, m).Post)
			benchPost(b, e)
		})
	}
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, amqp.Publishing) error { return nil }

func benchPost(b *testing.B, e *gin.Engine) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/api/billing", strings.NewReader(validBody))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Errorf("status %d: %s", rec.Code, rec.Body)
				return
			}
		}
	})
}
