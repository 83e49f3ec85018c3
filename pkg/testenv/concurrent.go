package testenv

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Concurrently runs op b.N times from workers goroutines, op(i) for i in
// 0..b.N-1, timing each call, and reports the rate in unit per second
// ("msgs/s", "req/s") and the 99th percentile latency ("p99-ms"). Any
// failed call fails the benchmark, naming the first error: a fast
// benchmark of failures measures nothing.
func Concurrently(b *testing.B, workers int, unit string, op func(i int) error) {
	b.Helper()
	lat := make([]time.Duration, b.N)
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				err := op(int(i))
				lat[i] = time.Since(t0)
				if err != nil && failed.Add(1) == 1 {
					firstErr.Store(err)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d calls failed, the first: %v", n, b.N, firstErr.Load())
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit)
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
