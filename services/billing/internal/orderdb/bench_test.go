package orderdb_test

import (
	"context"
	"fmt"
	"testing"

	"moviestream/pkg/billingmsg"
	"moviestream/services/billing/internal/order"
)

// BenchmarkSave measures one transaction of 500 orders; see orders/s.
func BenchmarkSave(b *testing.B) {
	s, _ := newStore(b)
	const batch = 500
	seq := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		orders := make([]order.Order, batch)
		for i := range orders {
			seq++
			orders[i] = order.Order{MessageID: fmt.Sprintf("bench-%d", seq), Order: billingmsg.Order{UserID: "u", NumberOfItems: 1, TotalAmount: 18000}}
		}
		if _, err := s.Save(context.Background(), orders); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "orders/s")
}
