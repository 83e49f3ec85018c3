package loadtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/broker"
	"moviestream/pkg/broker/brokertest"
	"moviestream/pkg/pgdb/pgtest"
)

// TestBareConsumerDrainsABacklog runs the drain row's reference on a real
// broker and database, small: every published order ends as one row, a
// partial last batch included, and the queue is empty afterwards (acked
// after commit).
func TestBareConsumerDrainsABacklog(t *testing.T) {
	t.Parallel()
	conn, ch, queue := declaredQueue(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const n, batch = 2950, 200 // 14 full batches and a partial one
	body := OrderBody("loadtest-test-r")
	if err := PublishBacklog(ctx, conn, queue, n, 100, func(i int) amqp.Publishing {
		return amqp.Publishing{ContentType: "application/json", MessageId: fmt.Sprint("m", i), Body: body}
	}); err != nil {
		t.Fatal(err)
	}
	if d := brokertest.Depth(t, ch, queue); d != n {
		t.Fatalf("queue holds %d messages after the backlog, want %d", d, n)
	}

	scratch := pgtest.NewDatabase(t)
	db, err := pgx.Connect(ctx, scratch.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	if _, err := db.Exec(ctx, ScratchOrdersTable); err != nil {
		t.Fatal(err)
	}
	if err := BareConsumer(ctx, conn, db, queue, 500, batch, n); err != nil {
		t.Fatal(err)
	}
	got, err := CountRows(db)(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Errorf("%d rows, want %d", got, n)
	}
	var total string
	if err := db.QueryRow(ctx, `SELECT sum(total_amount)::text FROM orders`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d.00", n*1990/100); total != want {
		t.Errorf("sum of totals %s, want %s", total, want)
	}
	// Acks are sent after the last commit; the broker settles them soon.
	deadline := time.Now().Add(10 * time.Second)
	for brokertest.Depth(t, ch, queue) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("queue still holds %d messages", brokertest.Depth(t, ch, queue))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConfirmedPublishing runs the order row's reference briefly: every
// message counted was confirmed, with one latency each, and is in the
// queue.
func TestConfirmedPublishing(t *testing.T) {
	t.Parallel()
	conn, ch, queue := declaredQueue(t)
	res, err := ConfirmedPublishing(context.Background(), conn, queue, 8, 300*time.Millisecond, OrderBody("u"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Confirmed == 0 || int64(len(res.Latencies)) != res.Confirmed || res.Rate() <= 0 {
		t.Fatalf("confirmed %d, %d latencies, rate %v", res.Confirmed, len(res.Latencies), res.Rate())
	}
	if d := brokertest.Depth(t, ch, queue); int64(d) != res.Confirmed {
		t.Errorf("queue holds %d, %d confirmed", d, res.Confirmed)
	}
}

// TestPublishBacklogRefusesAMissingQueue: the default exchange would drop
// the messages and still confirm them.
func TestPublishBacklogRefusesAMissingQueue(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	conn, err := broker.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	err = PublishBacklog(context.Background(), conn, brokertest.Topology(t, cfg).Queue, 10, 4, func(int) amqp.Publishing { return amqp.Publishing{} })
	if err == nil {
		t.Fatal("no error for a missing queue")
	}
}

// declaredQueue declares a test quorum queue of the test's own as the
// references use it, and returns a connection, a channel for inspection
// and the queue's name.
func declaredQueue(t *testing.T) (*amqp.Connection, *amqp.Channel, string) {
	t.Helper()
	cfg := brokertest.Config(t)
	queue := brokertest.Topology(t, cfg).Queue
	conn, err := broker.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := DeclareTestQueue(ch, queue); err != nil {
		t.Fatal(err)
	}
	return conn, ch, queue
}
