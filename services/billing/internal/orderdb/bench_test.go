package orderdb_test

import (
	"context"
	"fmt"
	"testing"

	"moviestream/pkg/billingmsg"
	"moviestream/services/billing/internal/order"
)

// BenchmarkSave measures one transaction of new orders (orders/s), for two
// batch sizes, and a batch that holds one order already stored (a client's
// retry), which takes the second, deduplicating attempt.
func BenchmarkSave(b *testing.B) {
	for _, tc := range []struct {
		name  string
		batch int
		retry bool
	}{
		{"new/batch=500", 500, false},
		{"new/batch=1000", 1000, false},
		{"one-retry/batch=1000", 1000, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, _ := newStore(b)
			ctx := context.Background()
			known := order.Order{MessageID: "known", Order: billingmsg.Order{UserID: "u", NumberOfItems: 1, TotalAmount: 18000}}
			if _, err := s.Save(ctx, []order.Order{known}); err != nil {
				b.Fatal(err)
			}
			seq := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				orders := make([]order.Order, tc.batch)
				for i := range orders {
					seq++
					orders[i] = order.Order{MessageID: fmt.Sprintf("bench-%d", seq), Order: billingmsg.Order{UserID: "u", NumberOfItems: 1, TotalAmount: 18000}}
				}
				if tc.retry {
					orders[tc.batch/2] = known
				}
				saved, err := s.Save(ctx, orders)
				if err != nil {
					b.Fatal(err)
				}
				if want := int64(tc.batch); tc.retry && saved.Inserted != want-1 || !tc.retry && saved.Inserted != want {
					b.Fatalf("inserted %d of %d", saved.Inserted, tc.batch)
				}
			}
			b.ReportMetric(float64(b.N*tc.batch)/b.Elapsed().Seconds(), "orders/s")
		})
	}
}
