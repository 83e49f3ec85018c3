package dlq_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"moviestream/pkg/broker/brokertest"
	"moviestream/pkg/pgdb/pgtest"
	"moviestream/pkg/testenv"
	"moviestream/services/billing/internal/consumer"
	"moviestream/services/billing/internal/dlq"
	"moviestream/services/billing/internal/orderdb"
)

// The guarantee the tool's output promises, end to end with billing's real
// consumer and a real database: the same dead letter replayed twice (its
// copy confirmed, but the dead letter not removed, as after a lost ack)
// makes one order.
func TestReplayedTwiceToBillingMakesOneOrder(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	db := pgtest.Open(t)
	store := orderdb.New(db)
	if err := store.Migrate(context.Background(), nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := consumer.New(consumer.Config{Broker: r.cfg, Topology: r.topo, Prefetch: 10, BatchSize: 5}, store, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testenv.WaitFor(t, 10*time.Second, "consumer subscribed", func() bool { return c.Status().Connected })

	count := func(where string) int64 {
		var n int64
		if err := db.Raw("SELECT count(*) FROM orders WHERE " + where).Scan(&n).Error; err != nil {
			t.Fatalf("count: %v", err)
		}
		return n
	}
	const valid = `{"user_id":"3","number_of_items":"5","total_amount":"180"}`
	at := time.Now()
	// A valid order that died anyway (say the delivery limit during an
	// incident), so it is worth replaying.
	dead := deadLetter("order-1", "delivery_limit", at, valid)
	tool := r.tool(r.config())

	brokertest.Publish(t, r.cfg, r.topo.DeadLetterQueue(), dead)
	if rep, err := tool.Replay(context.Background(), dlq.Filter{IDs: []string{"order-1"}}, false); err != nil || len(rep.Moved) != 1 {
		t.Fatalf("first replay: moved %d, err %v", len(rep.Moved), err)
	}
	testenv.WaitFor(t, 10*time.Second, "first order", func() bool { return count("message_id = 'order-1'") == 1 })

	// The same dead letter again, and a second order behind it: once that
	// one is written, the duplicate before it has been handled too.
	brokertest.Publish(t, r.cfg, r.topo.DeadLetterQueue(), dead, deadLetter("order-2", "delivery_limit", at, valid))
	if rep, err := tool.Replay(context.Background(), dlq.Filter{}, false); err != nil || len(rep.Moved) != 2 {
		t.Fatalf("second replay: moved %d, err %v", len(rep.Moved), err)
	}
	testenv.WaitFor(t, 10*time.Second, "second order", func() bool { return count("message_id = 'order-2'") == 1 })

	if n := count("message_id = 'order-1'"); n != 1 {
		t.Errorf("orders for order-1 after replaying it twice = %d, want 1", n)
	}
	if n := count("true"); n != 2 {
		t.Errorf("orders = %d, want 2", n)
	}
	if n := brokertest.Depth(t, r.ch, r.topo.DeadLetterQueue()); n != 0 {
		t.Errorf("DLQ holds %d after the replays, want 0 (replayed copies dead-lettered again?)", n)
	}
}
