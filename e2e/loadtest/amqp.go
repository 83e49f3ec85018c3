package loadtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/broker"
)

// TestQueue is the name of one of a run's private queues. The test user
// may only use queues named test.*.
func TestQueue(runID, what string) string { return "test.loadtest." + runID + "." + what }

// DeclareTestQueue declares a private durable quorum queue, like
// billing_queue but without its dead-lettering, which the references do not
// need.
func DeclareTestQueue(ch *amqp.Channel, name string) error {
	if _, err := ch.QueueDeclare(name, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
		return fmt.Errorf("loadtest: declare %s: %w", name, err)
	}
	return nil
}

// DeleteQueues deletes the queues (gone already is fine).
func DeleteQueues(cfg broker.Config, names ...string) error {
	conn, err := broker.Dial(cfg)
	if err != nil {
		return fmt.Errorf("loadtest: dial %s: %w", cfg, err)
	}
	defer conn.Close()
	var errs []error
	for _, name := range names {
		ch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("loadtest: channel: %w", err)
		}
		if _, err := ch.QueueDelete(name, false, false, false); err != nil {
			var amqpErr *amqp.Error
			if !errors.As(err, &amqpErr) || amqpErr.Code != amqp.NotFound {
				errs = append(errs, fmt.Errorf("loadtest: delete queue %s: %w", name, err))
			}
			continue
		}
		_ = ch.Close()
	}
	return errors.Join(errs...)
}

// confirmChannel opens a channel in confirm mode.
func confirmChannel(conn *amqp.Connection) (*amqp.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("loadtest: channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("loadtest: confirm mode: %w", err)
	}
	return ch, nil
}

// PublishResult is what ConfirmedPublishing measured.
type PublishResult struct {
	Confirmed int64
	Elapsed   time.Duration
	Latencies []time.Duration // publish to confirm, one per message
}

// Rate is the confirmed messages per second.
func (r PublishResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Confirmed) / r.Elapsed.Seconds()
}

// ConfirmedPublishing is the order row's reference: publishers goroutines
// (as many as the load test's HTTP connections), each publishing one
// persistent message to queue and waiting for its confirm before the next,
// all on one channel, so confirms are pipelined across them as the
// gateway's should be. It runs for d.
func ConfirmedPublishing(ctx context.Context, conn *amqp.Connection, queue string, publishers int, d time.Duration, body []byte) (PublishResult, error) {
	ch, err := confirmChannel(conn)
	if err != nil {
		return PublishResult{}, err
	}
	defer ch.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		confirmed atomic.Int64
		mu        sync.Mutex
		lat       []time.Duration
		firstErr  error
		wg        sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	start := time.Now()
	for range publishers {
		wg.Go(func() {
			var mine []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, amqp.Publishing{
					ContentType: "application/json", DeliveryMode: amqp.Persistent, Timestamp: t0, Body: body,
				})
				if err == nil {
					var ok bool
					ok, err = dc.WaitContext(ctx)
					if err == nil && !ok {
						err = errors.New("nacked")
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("loadtest: publish to %s: %w", queue, err)
					}
					mu.Unlock()
					cancel()
					return
				}
				mine = append(mine, time.Since(t0))
				confirmed.Add(1)
			}
		})
	}
	wg.Wait()
	res := PublishResult{Confirmed: confirmed.Load(), Elapsed: time.Since(start), Latencies: lat}
	return res, firstErr
}

// PublishBacklog publishes n messages made by msg to queue through the
// default exchange, with up to window confirms outstanding, and returns
// once every one is confirmed. It checks first that the queue exists: the
// default exchange drops a message for a missing queue, and the confirm
// would still come.
func PublishBacklog(ctx context.Context, conn *amqp.Connection, queue string, n, window int, msg func(i int) amqp.Publishing) error {
	check, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("loadtest: channel: %w", err)
	}
	if _, err := check.QueueDeclarePassive(queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("loadtest: queue %s: %w", queue, err)
	}
	_ = check.Close()
	ch, err := confirmChannel(conn)
	if err != nil {
		return err
	}
	defer ch.Close()
	pending := make([]*amqp.DeferredConfirmation, 0, window)
	wait := func(dcs []*amqp.DeferredConfirmation) error {
		for _, dc := range dcs {
			ok, err := dc.WaitContext(ctx)
			if err != nil {
				return fmt.Errorf("loadtest: confirm from %s: %w", queue, err)
			}
			if !ok {
				return fmt.Errorf("loadtest: %s nacked message %d", queue, dc.DeliveryTag)
			}
		}
		return nil
	}
	for i := range n {
		m := msg(i)
		m.DeliveryMode = amqp.Persistent
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, m)
		if err != nil {
			return fmt.Errorf("loadtest: publish to %s: %w", queue, err)
		}
		pending = append(pending, dc)
		if len(pending) == window {
			// Wait for the older half only, so the broker always has
			// messages in flight.
			half := window / 2
			if err := wait(pending[:half]); err != nil {
				return err
			}
			pending = append(pending[:0], pending[half:]...)
		}
	}
	return wait(pending)
}
