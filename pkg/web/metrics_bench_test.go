package web_test

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"moviestream/pkg/web"
)

func BenchmarkObserve(b *testing.B) {
	m := web.NewHTTPMetrics(prometheus.NewRegistry(), "bench")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Observe("/api/movies/*rest", http.MethodGet, http.StatusOK, 0.002)
		}
	})
}
