package broker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/broker"
	"moviestream/pkg/broker/brokertest"
	"moviestream/pkg/testenv"
)

// publishAll runs publish(i) for i in [0, n) from callers goroutines and
// returns the error of each.
func publishAll(n, callers int, publish func(i int) error) []error {
	errs := make([]error, n)
	work := make(chan int)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for i := range work {
				errs[i] = publish(i)
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return errs
}

// drainIDs consumes exactly want messages from queue within 30s and returns
// how often each message id arrived; it fails the test on fewer, and on
// more arriving within a short grace period after the last.
func drainIDs(t *testing.T, cfg broker.Config, queue string, want int) map[string]int {
	t.Helper()
	ch := brokertest.Channel(t, cfg)
	deliveries, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume %s: %v", queue, err)
	}
	seen := make(map[string]int, want)
	deadline := time.After(30 * time.Second)
	for got := 0; got < want; got++ {
		select {
		case d := <-deliveries:
			seen[d.MessageId]++
		case <-deadline:
			t.Fatalf("%d of %d messages arrived in %s", got, want, queue)
		}
	}
	select {
	case d := <-deliveries:
		t.Fatalf("more than %d messages in %s: %q besides", want, queue, d.MessageId)
	case <-time.After(200 * time.Millisecond):
	}
	return seen
}

// TestConcurrentPublishesOnOneChannelAreAllConfirmed: a publisher with one
// channel and many callers at once confirms every message, and the queue
// holds each exactly once.
func TestConcurrentPublishesOnOneChannelAreAllConfirmed(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo := brokertest.Topology(t, cfg)
	p := broker.NewPublisherWithOptions(cfg, topo, broker.PublisherOptions{Channels: 1, InFlight: 16}, quiet)
	runPublisher(t, p)

	const n = 600
	errs := publishAll(n, 64, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return p.Publish(ctx, amqp.Publishing{MessageId: fmt.Sprintf("c-%d", i), Body: []byte("{}")})
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	seen := drainIDs(t, cfg, topo.Queue, n)
	for i := range n {
		if c := seen[fmt.Sprintf("c-%d", i)]; c != 1 {
			t.Errorf("message c-%d arrived %d times, want once", i, c)
		}
	}
}

func runPublisher(t *testing.T, p *broker.Publisher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for !p.Status().Connected {
		if time.Now().After(deadline) {
			t.Fatalf("publisher not connected within 10s: %s", p.Status().Error)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReturnsAreMatchedToTheirPublish: on one channel, publishes to a
// quorum queue (confirmed after its fsync) and to a queue that does not
// exist (returned and confirmed at once) are in flight together, some
// under the same message id. Every returned publish, and only those, fails
// with ErrUnroutable; the others are confirmed and queued.
func TestReturnsAreMatchedToTheirPublish(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo, _ := brokertest.Declared(t, cfg)
	cc := confirmChannel(t, cfg)
	nowhere := topo.Queue + ".nobody-declared-this"

	const n = 800
	// Every third publish is unroutable; each pair 4k, 4k+1 shares an id,
	// so some pairs are one routed and one returned publish of one id.
	unroutable := func(i int) bool { return i%3 == 0 }
	id := func(i int) string { return fmt.Sprintf("r-%d", i/2) }
	errs := publishAll(n, 64, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		key := topo.Queue
		if unroutable(i) {
			key = nowhere
		}
		return cc.Publish(ctx, "", key, amqp.Publishing{MessageId: id(i), Body: []byte(fmt.Sprint(i))})
	})
	routed := map[string]int{}
	for i, err := range errs {
		switch {
		case unroutable(i) && !errors.Is(err, broker.ErrUnroutable):
			t.Errorf("publish %d (%s) to a missing queue = %v, want ErrUnroutable", i, id(i), err)
		case !unroutable(i) && err != nil:
			t.Errorf("publish %d (%s) to the queue = %v, want nil", i, id(i), err)
		case !unroutable(i):
			routed[id(i)]++
		}
	}
	total := 0
	for _, c := range routed {
		total += c
	}
	seen := drainIDs(t, cfg, topo.Queue, total)
	for k, c := range routed {
		if seen[k] != c {
			t.Errorf("message %s queued %d times, want %d", k, seen[k], c)
		}
	}
}

// TestNackedPublishesAmongConfirmedOnes: publishes to a queue that refuses
// every message are nacked, and only those, while publishes to a normal
// queue on the same channel are confirmed at the same time.
func TestNackedPublishesAmongConfirmedOnes(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo, ch := brokertest.Declared(t, cfg)
	full := topo.Queue + ".full"
	if _, err := ch.QueueDeclare(full, false, true, false, false, amqp.Table{"x-max-length": int64(0), "x-overflow": "reject-publish"}); err != nil {
		t.Fatalf("declare full queue: %v", err)
	}
	t.Cleanup(func() { _, _ = ch.QueueDelete(full, false, false, false) })
	cc := confirmChannel(t, cfg)

	const n = 300
	refused := func(i int) bool { return i%2 == 0 }
	errs := publishAll(n, 32, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		key := topo.Queue
		if refused(i) {
			key = full
		}
		return cc.Publish(ctx, "", key, amqp.Publishing{MessageId: fmt.Sprintf("n-%d", i), Body: []byte("{}")})
	})
	for i, err := range errs {
		if refused(i) && !errors.Is(err, broker.ErrNacked) {
			t.Errorf("publish %d to a rejecting queue = %v, want ErrNacked", i, err)
		}
		if !refused(i) && err != nil {
			t.Errorf("publish %d to the queue = %v, want nil", i, err)
		}
	}
	if got := len(drainIDs(t, cfg, topo.Queue, n/2)); got != n/2 {
		t.Errorf("%d distinct messages queued, want %d", got, n/2)
	}
}

// TestAbandonedPublishesLeaveTheChannelUsable: callers that give up before
// their confirm leave returns behind nobody waits for. They neither stall
// the channel (a full returns buffer would block the connection's reader
// and with it every confirm) nor are taken for the returns of later
// publishes.
func TestAbandonedPublishesLeaveTheChannelUsable(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo, _ := brokertest.Declared(t, cfg)
	cc := confirmChannel(t, cfg)
	nowhere := topo.Queue + ".nobody-declared-this"

	// Far more returns than the channel's in-flight limit, most of them
	// abandoned at some point between send and confirm.
	abandoned, afterSend := 0, 0
	for _, err := range publishAll(3*broker.DefaultInFlight, 64, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%40)*50*time.Microsecond)
		defer cancel()
		return cc.Publish(ctx, "", nowhere, amqp.Publishing{MessageId: fmt.Sprintf("a-%d", i%50), Body: []byte("{}")})
	}) {
		switch {
		case errors.Is(err, context.DeadlineExceeded) && errors.Is(err, broker.ErrUnavailable):
			abandoned++
			if strings.Contains(err.Error(), "waiting for confirm") {
				afterSend++
			}
		case !errors.Is(err, broker.ErrUnroutable):
			t.Fatalf("unroutable publish = %v, want ErrUnroutable, or ErrUnavailable at the deadline", err)
		}
	}

	// The same ids again, routable now and unroutable, with time to finish.
	start := time.Now()
	errs := publishAll(200, 64, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		key := topo.Queue
		if i%2 == 1 {
			key = nowhere
		}
		return cc.Publish(ctx, "", key, amqp.Publishing{MessageId: fmt.Sprintf("a-%d", i%50), Body: []byte("{}")})
	})
	for i, err := range errs {
		if i%2 == 0 && err != nil {
			t.Errorf("routable publish %d after the abandoned ones = %v", i, err)
		}
		if i%2 == 1 && !errors.Is(err, broker.ErrUnroutable) {
			t.Errorf("unroutable publish %d after the abandoned ones = %v, want ErrUnroutable", i, err)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("200 publishes after the abandoned ones took %s: the channel stalled", took)
	}
	drainIDs(t, cfg, topo.Queue, 100)
	t.Logf("%d of %d unroutable publishes abandoned, %d of them after sending", abandoned, 3*broker.DefaultInFlight, afterSend)
}

// TestPublishesInFlightWhenTheConnectionDiesAreUnavailable: when the
// connection goes away under publishes waiting for their confirm, they end
// with ErrUnavailable, not ErrNacked (the broker refused nothing), and none
// hangs.
func TestPublishesInFlightWhenTheConnectionDiesAreUnavailable(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo, _ := brokertest.Declared(t, cfg)
	conn, err := broker.Dial(cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cc, err := broker.NewConfirmChannel(conn)
	if err != nil {
		t.Fatal(err)
	}

	const n = 2000
	var once sync.Once
	errs := publishAll(n, 64, func(i int) error {
		if i == n/4 {
			once.Do(func() { go func() { _ = conn.Close() }() })
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return cc.Publish(ctx, "", topo.Queue, amqp.Publishing{MessageId: fmt.Sprintf("d-%d", i), Body: []byte("{}")})
	})
	failed := 0
	for i, err := range errs {
		if err == nil {
			continue
		}
		failed++
		if !errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrNacked) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("publish %d = %v, want ErrUnavailable (connection gone), not a nack or a timeout", i, err)
		}
	}
	if failed == 0 {
		t.Fatal("no publish failed: the connection was closed too late to test anything")
	}
}

// TestPublisherRenewsARefusedChannel: a publish the broker refuses (here a
// policy makes the queue reject every message) replaces its channel, on the
// same connection, instead of leaving it bound to whatever refused it; once
// the queue accepts again, publishing works without a reconnect.
func TestPublisherRenewsARefusedChannel(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo := brokertest.Topology(t, cfg)
	var logs testenv.LogBuffer
	p := broker.NewPublisherWithOptions(cfg, topo, broker.PublisherOptions{Channels: 1}, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testenv.WaitFor(t, 10*time.Second, "publisher connected", func() bool { return p.Status().Connected })

	publish := func(id string) error {
		pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer pcancel()
		return p.Publish(pctx, amqp.Publishing{MessageId: id, Body: []byte("{}")})
	}
	brokertest.SetPolicy(t, topo.Queue, `{"max-length":0,"overflow":"reject-publish"}`)
	// A channel serves a second before a refusal renews it: publish until
	// one does.
	testenv.WaitFor(t, 10*time.Second, "the policy to refuse publishes", func() bool {
		return errors.Is(publish("refused"), broker.ErrNacked)
	})
	refusedSince := time.Now()
	testenv.WaitFor(t, 10*time.Second, "the refused channel renewed", func() bool {
		if err := publish("refused"); !errors.Is(err, broker.ErrNacked) {
			t.Fatalf("Publish to a queue refusing everything = %v, want ErrNacked", err)
		}
		return logs.Count("publishing on a new channel") > 0
	})
	if n, most := logs.Count("publishing on a new channel"), int(time.Since(refusedSince)/time.Second)+1; n > most {
		t.Errorf("%d renewals in %v: more than one a second", n, time.Since(refusedSince))
	}

	brokertest.ClearPolicy(t, topo.Queue)
	testenv.WaitFor(t, 10*time.Second, "a publish accepted again", func() bool { return publish("accepted") == nil })
	if n := logs.Count("reconnecting"); n != 0 {
		t.Errorf("the publisher reconnected %d times; a refused publish needs a new channel, not a new connection:\n%s", n, logs.String())
	}
}
