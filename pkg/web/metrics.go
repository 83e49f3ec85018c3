package web

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a service's own metrics registry with the Go runtime
// and process collectors. Each service makes one in main and passes it to
// whatever it instruments; nothing registers with client_golang's global
// default registry.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// HTTPMetrics counts and times the requests of one service. Route is the
// route template ("/api/movies/:id"), never the raw path, so the label
// keeps a small, closed set of values.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// series caches the children of each route, method and code seen, so
	// a request costs one map lookup instead of two label hashings.
	series sync.Map // seriesKey -> *seriesPair
}

type seriesKey struct {
	route, method string
	code          int
}

type seriesPair struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// NewHTTPMetrics registers moviestream_http_requests_total and
// moviestream_http_request_duration_seconds for service on reg.
func NewHTTPMetrics(reg prometheus.Registerer, service string) *HTTPMetrics {
	m := &HTTPMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "moviestream_http_requests_total",
			Help:        "HTTP requests answered, by route template, method and status code.",
			ConstLabels: prometheus.Labels{"service": service},
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "moviestream_http_request_duration_seconds",
			Help:        "Time from the request's arrival to the end of its answer, by route template and method.",
			ConstLabels: prometheus.Labels{"service": service},
			Buckets:     []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// Observe records one answered request.
func (m *HTTPMetrics) Observe(route, method string, code int, seconds float64) {
	if code < 100 || code >= 600 {
		code = 0 // "other": the cache stays as small as the label set
	}
	key := seriesKey{route: route, method: knownMethod(method), code: code}
	p, ok := m.series.Load(key)
	if !ok {
		p, _ = m.series.LoadOrStore(key, &seriesPair{
			requests: m.requests.WithLabelValues(key.route, key.method, statusText(code)),
			duration: m.duration.WithLabelValues(key.route, key.method),
		})
	}
	pair := p.(*seriesPair)
	pair.requests.Inc()
	pair.duration.Observe(seconds)
}

// knownMethod keeps the method label a closed set: a client can send any
// token as a method.
func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// statusText formats a status code; the strings are made once, so the hot
// path does not allocate.
func statusText(code int) string {
	if code >= 100 && code < 600 {
		return codeText[code-100]
	}
	return "other"
}

var codeText = func() (c [500]string) {
	for i := range c {
		c[i] = strconv.Itoa(i + 100)
	}
	return c
}()

// MetricsHandler serves reg in the Prometheus text format.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// MetricsPath is where every service serves its metrics, on its admin
// listener (billing: its health port).
const MetricsPath = "/metrics"

// AdminMux serves /health, /ready (when ready is not nil), /metrics,
// /metadata (also as /1.0/metadata) and, to loopback peers only, Go's
// profiles under /debug/pprof/: the admin listener of the gateway and
// inventory, and billing's only listener. It is never mounted on a public
// port.
func AdminMux(ready ReadinessFunc, reg *prometheus.Registry, meta Metadata) *http.ServeMux {
	mux := HealthMux(ready)
	mux.Handle("GET "+MetricsPath, MetricsHandler(reg))
	HandleMetadata(mux, meta)
	handlePprof(mux)
	return mux
}
