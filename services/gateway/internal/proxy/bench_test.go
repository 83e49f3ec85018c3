package proxy_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"moviestream/pkg/web"
	"moviestream/services/gateway/internal/proxy"
)

// discardWriter is the cheapest http.ResponseWriter: the benchmark then
// counts the proxy's and its transport's work, not a recorder's.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header  { return w.h }
func (w *discardWriter) WriteHeader(code int) { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

// BenchmarkHandler calls the proxy handler directly, as the gateway's
// server does for GET /api/movies/:id, against a real backend over
// loopback: allocations and time per proxied request, without a client or
// the gateway's own server in the figures. req/s is per benchmark
// goroutine set (GOMAXPROCS), for comparing builds, not a capacity.
func BenchmarkHandler(b *testing.B) {
	body := []byte(`{"id":42,"title":"Alien","description":"In space no one can hear you scream."}`)
	backend, conns := newCountingBackend(b, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(web.RequestIDHeader, "0123456789abcdef0123456789abcdef")
		_, _ = w.Write(body)
	}))
	u, err := url.Parse(backend.URL)
	if err != nil {
		b.Fatal(err)
	}
	h, err := proxy.New(proxy.Config{Target: u, Timeout: 5 * time.Second}, discardLog())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			r, err := http.NewRequest(http.MethodGet, "/api/movies/42", http.NoBody)
			if err != nil {
				b.Error(err)
				return
			}
			r.RemoteAddr = "127.0.0.1:40000"
			r.Header.Set(web.RequestIDHeader, "0123456789abcdef0123456789abcdef")
			clear(w.h)
			w.status, w.n = 0, 0
			h.ServeHTTP(w, r)
			if w.status != http.StatusOK || w.n != len(body) {
				b.Errorf("status %d, %d bytes", w.status, w.n)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(conns.Load()), "backend-conns")
}
