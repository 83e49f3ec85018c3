package ginweb_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"moviestream/pkg/ginweb"
	"moviestream/pkg/web"
)

// TestMetricsUseRouteTemplates: labels carry the route template and a
// closed set of methods, so ids, random paths and odd methods add no series.
func TestMetricsUseRouteTemplates(t *testing.T) {
	t.Parallel()
	reg := web.NewRegistry()
	e, err := ginweb.NewEngine(slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Use(ginweb.Metrics(web.NewHTTPMetrics(reg, "test")))
	e.GET("/api/movies/:id", func(c *gin.Context) { c.Status(http.StatusOK) })
	for _, req := range []struct{ method, path string }{
		{"GET", "/api/movies/1"}, {"GET", "/api/movies/2"}, {"GET", "/api/movies/3"},
		{"GET", "/nope/1"}, {"GET", "/nope/2"}, {"BREW", "/api/movies/4"},
	} {
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(req.method, req.path, nil))
	}

	want := `
# HELP moviestream_http_requests_total HTTP requests answered, by route template, method and status code.
# TYPE moviestream_http_requests_total counter
moviestream_http_requests_total{code="200",method="GET",route="/api/movies/:id",service="test"} 3
moviestream_http_requests_total{code="404",method="GET",route="unmatched",service="test"} 2
moviestream_http_requests_total{code="405",method="OTHER",route="unmatched",service="test"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "moviestream_http_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "moviestream_http_request_duration_seconds"); n != 3 {
		t.Errorf("duration series = %d, want 3 (one per route and method)", n)
	}

	// The admin listener serves them in the text format.
	rec := httptest.NewRecorder()
	web.AdminMux(nil, reg, web.Metadata{}).ServeHTTP(rec, httptest.NewRequest("GET", web.MetricsPath, nil))
	body, _ := io.ReadAll(rec.Body)
	for _, s := range []string{`route="/api/movies/:id"`, "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(string(body), s) {
			t.Errorf("/metrics lacks %s", s)
		}
	}
}
