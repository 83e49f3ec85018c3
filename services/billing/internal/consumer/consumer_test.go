package consumer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"gorm.io/gorm"

	"moviestream/pkg/broker"
	"moviestream/pkg/broker/brokertest"
	"moviestream/pkg/pgdb"
	"moviestream/pkg/pgdb/pgtest"
	"moviestream/pkg/testenv"
	"moviestream/services/billing/internal/consumer"
	"moviestream/services/billing/internal/order"
	"moviestream/services/billing/internal/orderdb"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type rig struct {
	cfg  broker.Config
	topo broker.Topology
	db   *gorm.DB
	ch   *amqp.Channel
}

// newRig gives a test its own database (migrated) and its own queue
// (declared), both real.
func newRig(tb testing.TB) *rig {
	tb.Helper()
	cfg := brokertest.Config(tb)
	topo := brokertest.Topology(tb, cfg)
	ch := brokertest.Channel(tb, cfg)
	if err := topo.Declare(ch); err != nil {
		tb.Fatalf("declare: %v", err)
	}
	db := pgtest.Open(tb)
	if err := orderdb.New(db).Migrate(context.Background(), nil); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return &rig{cfg: cfg, topo: topo, db: db, ch: ch}
}

// start runs a consumer over store until the returned stop is called (or
// the test ends) and waits until it is subscribed.
func (r *rig) start(tb testing.TB, store order.Store) (stop func()) {
	tb.Helper()
	c := consumer.New(consumer.Config{Broker: r.cfg, Topology: r.topo, Prefetch: 500, BatchSize: 250}, store, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	tb.Cleanup(stop)
	testenv.WaitFor(tb, 10*time.Second, "consumer subscribed", func() bool { return c.Status().Connected })
	return stop
}

func (r *rig) count(tb testing.TB, where string) int64 {
	tb.Helper()
	var n int64
	if err := r.db.Raw("SELECT count(*) FROM orders WHERE " + where).Scan(&n).Error; err != nil {
		tb.Fatalf("count: %v", err)
	}
	return n
}

func msg(id, body string) amqp.Publishing {
	return amqp.Publishing{MessageId: id, ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: []byte(body)}
}

const valid = `{"user_id":"3","number_of_items":"5","total_amount":"180"}`

// TestMessagesBecomeOneOrderEach: every message is written once, however
// often its message_id arrives, and acked only then.
func TestMessagesBecomeOneOrderEach(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msgs []amqp.Publishing
		want map[string]int64 // rows matching each WHERE clause once all are handled
	}{
		{
			name: "acked after commit",
			msgs: []amqp.Publishing{
				msg("m-1", valid),
				msg("m-2", `{"user_id":42,"number_of_items":1,"total_amount":0.99}`),
				msg("", `{"user_id":"by-hand","number_of_items":"2","total_amount":"10.5"}`), // management UI style: no id
			},
			want: map[string]int64{
				"true": 3,
				"message_id = 'm-1' AND user_id = '3' AND number_of_items = 5 AND total_amount = 180.00": 1,
				"message_id IS NULL AND total_amount = 10.50":                                            1,
			},
		},
		{
			name: "redelivered message id writes one order",
			msgs: []amqp.Publishing{msg("same", valid), msg("same", valid), msg("other", valid)},
			want: map[string]int64{"true": 2, "message_id = 'same'": 1, "message_id = 'other'": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			stop := r.start(t, orderdb.New(r.db))
			brokertest.Publish(t, r.cfg, r.topo.Queue, tt.msgs...)
			counts := func() map[string]int64 {
				got := make(map[string]int64, len(tt.want))
				for where := range tt.want {
					got[where] = r.count(t, where)
				}
				return got
			}
			testenv.WaitFor(t, 10*time.Second, "orders written", func() bool { return maps.Equal(counts(), tt.want) })
			stop()
			// Acked, not just delivered: after the consumer is gone nothing
			// returns, duplicates included.
			if n := brokertest.Depth(t, r.ch, r.topo.Queue); n != 0 {
				t.Fatalf("queue holds %d messages after processing, want 0 (unacked?)", n)
			}
			if got := counts(); !maps.Equal(got, tt.want) {
				t.Errorf("rows after stop = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPoisonMessagesAreDeadLetteredWithReason(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	stop := r.start(t, orderdb.New(r.db))

	poison := map[string]string{
		"malformed":      `{"user_id":"3",`,
		"not-json":       "\x00\x01binary\xff",
		"empty":          ``,
		"wrong-types":    `{"user_id":true,"number_of_items":[1],"total_amount":{}}`,
		"negative":       `{"user_id":"3","number_of_items":"5","total_amount":"-180"}`,
		"decimals":       `{"user_id":"3","number_of_items":"5","total_amount":"1.999"}`,
		"zero-items":     `{"user_id":"3","number_of_items":0,"total_amount":"1"}`,
		"oversized-body": `{"user_id":"3","number_of_items":1,"total_amount":1,"pad":"` + strings.Repeat("x", 70_000) + `"}`,
		"json-null":      `null`,
		"json-array":     `[{"user_id":"3","number_of_items":1,"total_amount":1}]`,
		"fraction-items": `{"user_id":"3","number_of_items":1.5,"total_amount":"1"}`,
		"missing-user":   `{"number_of_items":1,"total_amount":"1"}`,
		"bad-utf8-user":  "{\"user_id\":\"\xff\xfe\",\"number_of_items\":1,\"total_amount\":1}",
		"too-large-sum":  `{"user_id":"3","number_of_items":1,"total_amount":"10000000000.00"}`,
		"bad-id\x00":     valid, // a valid body under a message_id PostgreSQL cannot store
	}
	// Every bad message sits between two valid ones, so a batch mixes both.
	var msgs []amqp.Publishing
	msgs = append(msgs, msg("good-0", valid))
	good := 1
	for id, body := range poison {
		msgs = append(msgs, msg(id, body), msg(fmt.Sprintf("good-%d", good), valid))
		good++
	}
	brokertest.Publish(t, r.cfg, r.topo.Queue, msgs...)

	testenv.WaitFor(t, 10*time.Second, "dead letters", func() bool {
		return brokertest.Depth(t, r.ch, r.topo.DeadLetterQueue()) == len(poison)
	})
	testenv.WaitFor(t, 10*time.Second, "valid orders", func() bool { return r.count(t, "true") == int64(good) })
	stop()
	if n := brokertest.Depth(t, r.ch, r.topo.Queue); n != 0 {
		t.Fatalf("main queue holds %d after stop, want 0", n)
	}
	if n := r.count(t, "message_id LIKE 'good-%'"); n != int64(good) {
		t.Fatalf("valid orders stored = %d, want %d", n, good)
	}
	seen := map[string]bool{}
	for range poison {
		d := brokertest.Get(t, r.ch, r.topo.DeadLetterQueue(), 5*time.Second)
		reason, _ := d.Headers[consumer.HeaderReason].(string)
		if reason == "" {
			t.Errorf("dead letter %q has no %s header", d.MessageId, consumer.HeaderReason)
		}
		if q, _ := d.Headers[consumer.HeaderOriginalQueue].(string); q != r.topo.Queue {
			t.Errorf("dead letter %q: original queue %q", d.MessageId, q)
		}
		if body, ok := poison[d.MessageId]; !ok || string(d.Body) != body {
			t.Errorf("dead letter %q: body not preserved", d.MessageId)
		}
		seen[d.MessageId] = true
	}
	if len(seen) != len(poison) {
		t.Errorf("dead-lettered %d distinct messages, want %d", len(seen), len(poison))
	}
}

func TestBacklogIsProcessedAtStart(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const n = 2000
	msgs := make([]amqp.Publishing, n)
	for i := range msgs {
		msgs[i] = msg(fmt.Sprintf("backlog-%d", i), valid)
	}
	brokertest.Publish(t, r.cfg, r.topo.Queue, msgs...) // while billing is "stopped"
	if d := brokertest.Depth(t, r.ch, r.topo.Queue); d != n {
		t.Fatalf("queue holds %d before start, want %d", d, n)
	}
	stop := r.start(t, orderdb.New(r.db))
	testenv.WaitFor(t, 30*time.Second, "backlog written", func() bool { return r.count(t, "true") == n })
	stop()
	if d := brokertest.Depth(t, r.ch, r.topo.Queue); d != 0 {
		t.Fatalf("queue holds %d after processing, want 0", d)
	}
}

func TestDatabaseDownLeavesMessagesUnackedAndStopReturnsThem(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	down, err := pgdb.Open(pgtest.UnreachableConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pgdb.Close(down)

	stop := r.start(t, orderdb.New(down))
	brokertest.Publish(t, r.cfg, r.topo.Queue, msg("a", valid), msg("b", valid), msg("c", valid))
	// Delivered to the consumer (nothing ready) but held, not acked.
	testenv.WaitFor(t, 10*time.Second, "messages delivered", func() bool { return brokertest.Depth(t, r.ch, r.topo.Queue) == 0 })
	stop()
	testenv.WaitFor(t, 10*time.Second, "messages back in the queue", func() bool { return brokertest.Depth(t, r.ch, r.topo.Queue) == 3 })
	if n := brokertest.Depth(t, r.ch, r.topo.DeadLetterQueue()); n != 0 {
		t.Fatalf("%d messages dead-lettered during a database outage, want 0", n)
	}
}

// stuckStore fails every write that holds message stuckID as if the
// database were down, and passes the others to the real store: the database
// "comes back" for the next batch while the first is still held.
type stuckStore struct {
	order.Store
	stuckID  string
	attempts atomic.Int64
}

func (s *stuckStore) Save(ctx context.Context, orders []order.Order) (int64, error) {
	for _, o := range orders {
		if o.MessageID == s.stuckID {
			s.attempts.Add(1)
			return 0, fmt.Errorf("fake outage: %w", order.ErrUnavailable)
		}
	}
	return s.Store.Save(ctx, orders)
}

// A batch left unacked at stop must stay unacked even when the batch after
// it commits: that batch's single multiple-ack must not settle it too.
func TestStopWithHeldBatchDoesNotAckItWithTheNextBatch(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	store := &stuckStore{Store: orderdb.New(r.db), stuckID: "stuck"}
	stop := r.start(t, store)

	brokertest.Publish(t, r.cfg, r.topo.Queue, msg("stuck", valid))
	testenv.WaitFor(t, 10*time.Second, "first write attempt", func() bool { return store.attempts.Load() >= 1 })
	// The next message arrives while the first batch is retried; it is
	// collected into the following batch.
	brokertest.Publish(t, r.cfg, r.topo.Queue, msg("next", valid))
	testenv.WaitFor(t, 10*time.Second, "next delivered", func() bool { return brokertest.Depth(t, r.ch, r.topo.Queue) == 0 })
	seen := store.attempts.Load()
	testenv.WaitFor(t, 10*time.Second, "two more retries", func() bool { return store.attempts.Load() >= seen+2 })
	stop()

	// "stuck" was never committed: it must be back in the queue, not acked.
	testenv.WaitFor(t, 10*time.Second, "uncommitted message back in the queue", func() bool {
		return brokertest.Depth(t, r.ch, r.topo.Queue)+int(r.count(t, "message_id = 'next'")) == 2
	})
	if n := r.count(t, "message_id = 'stuck'"); n != 0 {
		t.Fatalf("stuck message stored %d times, want 0", n)
	}
	if n := brokertest.Depth(t, r.ch, r.topo.DeadLetterQueue()); n != 0 {
		t.Fatalf("%d messages dead-lettered, want 0", n)
	}
}

// BenchmarkConsume measures orders written per second from a full queue.
func BenchmarkConsume(b *testing.B) {
	r := newRig(b)
	msgs := make([]amqp.Publishing, b.N)
	for i := range msgs {
		msgs[i] = msg(fmt.Sprintf("bench-%d", i), valid)
	}
	brokertest.Publish(b, r.cfg, r.topo.Queue, msgs...)
	b.ResetTimer()
	start := time.Now()
	stop := r.start(b, orderdb.New(r.db))
	testenv.WaitFor(b, 5*time.Minute, "all consumed", func() bool { return r.count(b, "true") == int64(b.N) })
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "orders/s")
}
