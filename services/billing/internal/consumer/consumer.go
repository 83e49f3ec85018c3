// Package consumer is billing's AMQP adapter: it takes messages from
// billing_queue in batches, writes each batch of orders in one transaction,
// and acknowledges every message only after that commit. Messages that can
// never become orders go to the dead-letter queue with the reason.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/backoff"
	"moviestream/pkg/broker"
	"moviestream/services/billing/internal/order"
)

// Headers set on a message billing dead-letters itself.
const (
	HeaderReason        = "x-error-reason"
	HeaderOriginalQueue = "x-original-queue"
	HeaderFailedAt      = "x-failed-at"
)

// Config tunes the consumer.
type Config struct {
	Broker   broker.Config
	Topology broker.Topology
	// Prefetch is how many unacknowledged messages the broker may push.
	Prefetch int
	// BatchSize caps the orders written in one transaction.
	BatchSize int
	// Linger is how long to keep collecting after the first message of a
	// batch; zero means 5ms. It adds at most that to a lone message's
	// latency and lets a backlog be written in full batches.
	Linger time.Duration
	// WriteTimeout bounds one attempt to write a batch; zero means 30s.
	WriteTimeout time.Duration
}

// Consumer turns billing messages into orders.
type Consumer struct {
	cfg    Config
	store  order.Store
	log    *slog.Logger
	status broker.StatusBox
}

// New returns a consumer writing to store.
func New(cfg Config, store order.Store, log *slog.Logger) *Consumer {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.Prefetch <= 1 {
		cfg.Prefetch = 4 * cfg.BatchSize
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 5 * time.Millisecond
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	return &Consumer{cfg: cfg, store: store, log: log}
}

// Run consumes until ctx ends, reconnecting after broker restarts. On stop
// it cancels the subscription, finishes the batch in hand, and leaves every
// message it has not committed unacknowledged, so the broker hands them out
// again.
func (c *Consumer) Run(ctx context.Context) error {
	return broker.Supervise(ctx, c.cfg.Broker, c.log, c.session)
}

// Status reports whether the consumer is subscribed.
func (c *Consumer) Status() broker.Status { return c.status.Get() }

// Readiness reports Status for /ready.
func (c *Consumer) Readiness() (bool, any) { return c.Status().Readiness() }

var errDeliveriesClosed = errors.New("delivery channel closed")

func (c *Consumer) session(ctx context.Context, conn *amqp.Connection) error {
	defer c.status.Set(broker.Status{Error: "reconnecting to rabbitmq"})

	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("consumer: open channel: %w", err)
	}
	defer ch.Close()
	if err := c.cfg.Topology.Declare(ch); err != nil {
		c.status.Set(broker.Status{Error: err.Error()})
		c.log.Error("rabbitmq topology", "err", err)
		return err
	}
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("consumer: qos: %w", err)
	}
	dlq, err := broker.NewConfirmChannel(conn)
	if err != nil {
		return err
	}
	defer dlq.Close()

	tag := consumerTag()
	deliveries, err := ch.Consume(c.cfg.Topology.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consumer: consume %q: %w", c.cfg.Topology.Queue, err)
	}
	c.status.Set(broker.Status{Connected: true})
	c.log.Info("consuming", "queue", c.cfg.Topology.Queue, "prefetch", c.cfg.Prefetch, "batch_size", c.cfg.BatchSize)

	// Two stages: while one batch is being committed, the next is gathered.
	// Batches are settled strictly in order, which is what makes the single
	// multiple-ack per batch in process correct.
	batches := make(chan []amqp.Delivery, 1)
	collectErr := make(chan error, 1)
	go func() {
		defer close(batches)
		for {
			batch, err := c.collect(ctx, deliveries)
			if len(batch) > 0 {
				batches <- batch
			}
			if err != nil {
				collectErr <- err
				return
			}
		}
	}()
	for batch := range batches {
		if !c.process(ctx, batch, dlq) {
			// Stopping with messages of this batch unacked: a later batch's
			// multiple-ack would settle them too, uncommitted. Leave every
			// remaining batch unacked as well; the broker redelivers them.
			for range batches {
			}
			break
		}
	}
	err = <-collectErr
	if ctx.Err() != nil {
		// Stop intake; what is prefetched but uncommitted goes back to the
		// queue when the channel closes.
		_ = ch.Cancel(tag, false)
		return nil
	}
	return err
}

// collect waits for one delivery, then gathers more until the batch is full
// or Linger has passed. The library hands deliveries over an unbuffered
// channel, so without the linger a backlog would be written one message per
// transaction (measured: ~500 orders/s instead of tens of thousands).
func (c *Consumer) collect(ctx context.Context, deliveries <-chan amqp.Delivery) ([]amqp.Delivery, error) {
	var batch []amqp.Delivery
	select {
	case d, ok := <-deliveries:
		if !ok {
			return nil, errDeliveriesClosed
		}
		batch = append(batch, d)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	linger := time.NewTimer(c.cfg.Linger)
	defer linger.Stop()
	for len(batch) < c.cfg.BatchSize {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return batch, errDeliveriesClosed
			}
			batch = append(batch, d)
		case <-linger.C:
			return batch, nil
		case <-ctx.Done():
			// Settle what is in hand; the caller then stops.
			return batch, nil
		}
	}
	return batch, nil
}

// process writes the valid messages of a batch and settles every message.
// It returns false when it left messages unsettled, which happens only
// when ctx has ended.
func (c *Consumer) process(ctx context.Context, batch []amqp.Delivery, dlq *broker.ConfirmChannel) bool {
	orders := make([]order.Order, 0, len(batch))
	held := make([]amqp.Delivery, 0, len(batch))
	for _, d := range batch {
		o, err := order.FromMessage(d.MessageId, d.Body)
		if err != nil {
			c.deadLetter(ctx, dlq, d, err)
			continue
		}
		orders = append(orders, o)
		held = append(held, d)
	}
	if len(orders) == 0 {
		return true
	}

	err := c.save(ctx, orders)
	switch {
	case err == nil:
		// Every earlier delivery on this channel is settled, so one
		// multiple-ack settles exactly this batch's held messages.
		if aerr := held[len(held)-1].Ack(true); aerr != nil {
			c.log.Debug("ack failed; messages will be redelivered and deduplicated", "messages", len(held), "err", aerr)
		}
		return true
	case ctx.Err() != nil:
		// Stopping while the database is down: nothing was committed, so
		// nothing is acked; the broker will hand these out again.
		c.log.Warn("stopping with uncommitted batch, leaving it unacked", "messages", len(held))
		return false
	default:
		return c.isolate(ctx, orders, held, err)
	}
}

// save writes orders, retrying with backoff for as long as the database is
// unreachable. A single attempt is not cut short by the stop signal, so a
// commit that is under way completes and its messages are acked.
func (c *Consumer) save(ctx context.Context, orders []order.Order) error {
	bo := backoff.New(100*time.Millisecond, 5*time.Second)
	for attempt := 1; ; attempt++ {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.WriteTimeout)
		inserted, err := c.store.Save(wctx, orders)
		cancel()
		if err == nil {
			if attempt > 1 {
				c.log.Info("database back, batch written", "attempts", attempt)
			}
			c.log.Debug("batch committed", "messages", len(orders), "inserted", inserted)
			return nil
		}
		if !errors.Is(err, order.ErrUnavailable) {
			return err
		}
		if attempt == 1 || attempt%20 == 0 {
			c.log.Warn("database unavailable, holding batch unacked", "messages", len(orders), "attempts", attempt, "err", err)
		}
		if err := bo.Sleep(ctx); err != nil {
			return err
		}
	}
}

// isolate handles a batch the database refused for a reason other than an
// outage: it writes the orders one by one so one bad order cannot hold back
// the others. An order that still fails is returned to the queue; the
// queue's delivery limit dead-letters it after broker.DeliveryLimit tries.
// Like process, it returns false when it stopped with messages unsettled.
func (c *Consumer) isolate(ctx context.Context, orders []order.Order, held []amqp.Delivery, batchErr error) bool {
	c.log.Error("batch write failed, retrying orders one by one", "messages", len(orders), "err", batchErr)
	for i, o := range orders {
		err := c.save(ctx, []order.Order{o})
		switch {
		case err == nil:
			c.ack(held[i])
		case ctx.Err() != nil:
			return false
		default:
			c.log.Error("order write failed, returning message to the queue",
				"message_id", held[i].MessageId, "delivery_count", deliveryCount(held[i]), "err", err)
			if nerr := held[i].Nack(false, true); nerr != nil {
				c.log.Warn("nack failed; the broker redelivers on reconnect", "message_id", held[i].MessageId, "err", nerr)
			}
		}
	}
	return true
}

// deadLetter moves a message that can never become an order into the DLQ
// with the reason in a header, then acks the original. If the DLQ publish is
// not confirmed, the message is rejected without requeue instead, and the
// queue's dead-letter settings route it to the same DLQ (with x-death but
// without our reason). Either way it is never redelivered in a loop.
func (c *Consumer) deadLetter(ctx context.Context, dlq *broker.ConfirmChannel, d amqp.Delivery, reason error) {
	headers := amqp.Table{}
	for k, v := range d.Headers {
		headers[k] = v
	}
	headers[HeaderReason] = reason.Error()
	headers[HeaderOriginalQueue] = c.cfg.Topology.Queue
	headers[HeaderFailedAt] = time.Now().UTC().Format(time.RFC3339Nano)

	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := dlq.Publish(pctx, "", c.cfg.Topology.DeadLetterQueue(), amqp.Publishing{
		Headers:         headers,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    amqp.Persistent,
		CorrelationId:   d.CorrelationId,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		AppId:           d.AppId,
		Body:            d.Body,
	})
	if err != nil {
		c.log.Warn("dead-letter publish failed, rejecting instead", "message_id", d.MessageId, "err", err)
		if rerr := d.Reject(false); rerr != nil {
			c.log.Warn("reject failed; the broker redelivers on reconnect", "message_id", d.MessageId, "err", rerr)
		}
	} else {
		c.ack(d)
	}
	c.log.Warn("message dead-lettered", "message_id", d.MessageId, "queue", c.cfg.Topology.DeadLetterQueue(), "reason", reason.Error())
}

// ack acknowledges one delivery. A failed ack means the channel is gone; the
// broker redelivers the message and the idempotent insert skips it.
func (c *Consumer) ack(d amqp.Delivery) {
	if err := d.Ack(false); err != nil {
		c.log.Debug("ack failed; message will be redelivered and deduplicated", "message_id", d.MessageId, "err", err)
	}
}

func deliveryCount(d amqp.Delivery) int64 {
	switch v := d.Headers["x-delivery-count"].(type) {
	case int64:
		return v
	case int32:
		return int64(v)
	default:
		return 0
	}
}

func consumerTag() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("billing-%s-%d", host, os.Getpid())
}
