// Package consumer is billing's AMQP adapter: it takes messages from
// billing_queue in batches, writes each batch of orders in one transaction,
// and acknowledges every message only after that commit. Messages that can
// never become orders go to the dead-letter queue with the reason.
//
// Once a message has passed the order rules, a failed write is the
// database's problem unless the store says the order itself was rejected:
// the consumer holds the batch unacked and retries it until the database
// takes it, reporting the hold on /ready. Only a rejected order is
// dead-lettered, alone.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
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
	// Metrics records commits, dead letters and state; nil records nothing.
	Metrics *Metrics
}

// Consumer turns billing messages into orders.
type Consumer struct {
	cfg    Config
	store  order.Store
	log    *slog.Logger
	status broker.StatusBox

	mu     sync.Mutex
	writes WriteStatus // zero while no write is held
}

// WriteStatus is the "database" part of /ready: whether orders are being
// written, and while a batch is held, since when and why.
type WriteStatus struct {
	Writable bool `json:"writable"`
	// SQLState is the code of the last failed attempt; empty when the error
	// had none (no connection, write timeout).
	SQLState string `json:"sqlstate,omitempty"`
	// Error is the last failed attempt's error.
	Error string `json:"error,omitempty"`
	// Since is when the first attempt of the held batch failed.
	Since time.Time `json:"since,omitzero"`
	// Attempts counts the failed attempts since then.
	Attempts int `json:"attempts,omitempty"`
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

// Writes reports whether the database takes billing's writes.
func (c *Consumer) Writes() WriteStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writes.Since.IsZero() {
		return WriteStatus{Writable: true}
	}
	return c.writes
}

// Readiness reports Status and Writes for /ready: ready when subscribed
// and no write is held; body {"rabbitmq": Status, "database": Writes}.
func (c *Consumer) Readiness() (bool, any) {
	st, w := c.Status(), c.Writes()
	return st.Connected && w.Writable, map[string]any{"rabbitmq": st, "database": w}
}

var errDeliveriesClosed = errors.New("delivery channel closed")

func (c *Consumer) session(ctx context.Context, conn *amqp.Connection) error {
	defer func() {
		c.status.Set(broker.Status{Error: "reconnecting to rabbitmq"})
		c.cfg.Metrics.setConnected(false)
	}()

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
	// Dead-letter copies travel on a connection of their own: a resource
	// alarm blocks a publishing connection entirely, and on the consuming
	// one it would stall the acks of every order already written.
	dlqCfg := c.cfg.Broker
	dlqCfg.Name += "-dlq"
	dlqConn, err := broker.Dial(dlqCfg)
	if err != nil {
		return fmt.Errorf("consumer: dead-letter connection: %w", err)
	}
	defer dlqConn.Close()
	dlq, err := broker.NewConfirmChannel(dlqConn)
	if err != nil {
		return err
	}
	defer dlq.Close()
	// If that connection dies, end the session: Supervise reconnects both.
	dlqClosed := dlqConn.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		if e, ok := <-dlqClosed; ok && e != nil {
			c.log.Warn("dead-letter connection lost, reconnecting", "err", e)
			_ = ch.Close()
		}
	}()

	// Nothing is taken from the queue while the database refuses writes: a
	// message handed out and returned costs it one of its deliveries, so a
	// billing that crashes or restarts in a loop meanwhile must not hold any.
	c.status.Set(broker.Status{Error: "not consuming until the database takes writes"})
	if err := c.waitWritable(ctx); err != nil {
		return nil // stopping
	}
	// Messages returned to the queue by an earlier crash or stop come back
	// first; take them one at a time, so that if one of them crashes
	// billing, it alone is charged a delivery.
	if !c.recoverReturned(ctx, ch, dlq) {
		return nil // stopping
	}

	tag := consumerTag()
	deliveries, err := ch.Consume(c.cfg.Topology.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consumer: consume %q: %w", c.cfg.Topology.Queue, err)
	}
	c.status.Set(broker.Status{Connected: true})
	c.cfg.Metrics.setConnected(true)
	c.log.Info("consuming", "queue", c.cfg.Topology.Queue, "prefetch", c.cfg.Prefetch, "batch_size", c.cfg.BatchSize)

	// Two stages: while one batch is being committed, the next is gathered
	// (and its messages parsed). Batches are settled strictly in order,
	// which is what makes the single multiple-ack per batch in process
	// correct. The hand-over is unbuffered, so the collector knows when the
	// writer is free (see collect).
	batches := make(chan []message)
	collectErr := make(chan error, 1)
	go func() {
		defer close(batches)
		for {
			if err := c.collect(ctx, deliveries, batches); err != nil {
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

// waitWritable returns once the database takes a write, probing with
// backoff meanwhile; the wait shows on /ready as a hold. It returns ctx's
// error when ctx ends first.
func (c *Consumer) waitWritable(ctx context.Context) error {
	bo := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, c.cfg.WriteTimeout)
		err := c.store.Probe(pctx)
		cancel()
		if err == nil {
			c.resume()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.hold(0, err)
		if err := bo.Sleep(ctx); err != nil {
			return err
		}
	}
}

// recoverReturned takes the messages at the head of the queue one at a
// time (basic.get, so exactly one is unacknowledged) for as long as they
// are redeliveries, and processes each as a batch of one. RabbitMQ's
// quorum queue hands out returned messages before any other, so after a
// crash this settles everything the crash returned before billing takes
// messages in batches again. A message that crashes billing is then the
// only one in flight when it does: it alone spends its deliveries, and
// after broker.DeliveryLimit of them RabbitMQ dead-letters it. It returns
// false when ctx ended with a message unsettled.
func (c *Consumer) recoverReturned(ctx context.Context, ch *amqp.Channel, dlq *broker.ConfirmChannel) bool {
	recovered := 0
	defer func() {
		if recovered > 0 {
			c.log.Info("returned messages processed one at a time", "messages", recovered)
		}
	}()
	for ctx.Err() == nil {
		d, ok, err := ch.Get(c.cfg.Topology.Queue, false)
		if err != nil || !ok {
			return true // empty, or the channel failed: Consume reports it
		}
		if !c.process(ctx, []message{c.parse(d)}, dlq) {
			return false
		}
		if !d.Redelivered {
			return true
		}
		recovered++
	}
	return true
}

// message is a delivery with the order parsed from it, or the reason it
// can never become one.
type message struct {
	d   amqp.Delivery
	o   order.Order
	err error
}

func (c *Consumer) parse(d amqp.Delivery) message {
	o, err := order.FromMessage(d.MessageId, d.Body)
	return message{d: d, o: o, err: err}
}

// collect waits for one delivery, then gathers more and hands the batch to
// the writer on out once it is full, or once Linger has passed and the
// writer is free to take it. While the writer commits the previous batch
// this one keeps growing, so a backlog is written in full batches; a lone
// message waits at most Linger for company. The library hands deliveries
// over an unbuffered channel, so without the linger a backlog would be
// written one message per transaction (measured: ~500 orders/s instead of
// tens of thousands). It returns an error when the deliveries end (after
// handing over what it holds) or when ctx has ended.
func (c *Consumer) collect(ctx context.Context, deliveries <-chan amqp.Delivery, out chan<- []message) error {
	var batch []message
	select {
	case d, ok := <-deliveries:
		if !ok {
			return errDeliveriesClosed
		}
		// Grown by append: a lone message does not pay for a full batch.
		batch = append(batch, c.parse(d))
	case <-ctx.Done():
		return ctx.Err()
	}
	linger := time.NewTimer(c.cfg.Linger)
	defer linger.Stop()
	var ready chan<- []message // nil, which never takes a send, until the linger passed
	for len(batch) < c.cfg.BatchSize {
		select {
		case d, ok := <-deliveries:
			if !ok {
				out <- batch
				return errDeliveriesClosed
			}
			batch = append(batch, c.parse(d))
		case <-linger.C:
			ready = out
		case ready <- batch:
			return nil
		case <-ctx.Done():
			// Settle what is in hand; the next call reports the stop.
			out <- batch
			return nil
		}
	}
	out <- batch
	return nil
}

// process writes the valid messages of a batch and settles every message.
// It returns false when it left messages unsettled, which happens only
// when ctx has ended.
func (c *Consumer) process(ctx context.Context, batch []message, dlq *broker.ConfirmChannel) bool {
	orders := make([]order.Order, 0, len(batch))
	held := make([]amqp.Delivery, 0, len(batch))
	for _, m := range batch {
		beforeProcessing(m.d)
		if m.err != nil {
			c.deadLetter(ctx, dlq, m.d, m.err)
			continue
		}
		orders = append(orders, m.o)
		held = append(held, m.d)
	}
	if len(orders) == 0 {
		return true
	}

	saved, err := c.save(ctx, orders)
	switch {
	case err == nil && len(saved.Reused) == 0:
		// Every earlier delivery on this channel is settled, so one
		// multiple-ack settles exactly this batch's held messages.
		if aerr := held[len(held)-1].Ack(true); aerr != nil {
			c.log.Debug("ack failed; messages will be redelivered and deduplicated", "messages", len(held), "err", aerr)
		}
		return true
	case err == nil:
		c.settle(ctx, dlq, held, saved.Reused)
		return true
	case ctx.Err() != nil:
		// Stopping while the database is down: nothing was committed, so
		// nothing is acked; the broker will hand these out again.
		c.log.Warn("stopping with uncommitted batch, leaving it unacked", "messages", len(held))
		return false
	default: // order.ErrRejected
		return c.isolate(ctx, dlq, orders, held, err)
	}
}

// save writes orders, retrying with backoff for as long as the database
// fails the write for a reason of its own: anything but order.ErrRejected,
// which it returns. It returns ctx's error only when ctx ends between
// attempts; a single attempt is not cut short by the stop signal, so a
// commit that is under way completes and its messages are acked.
func (c *Consumer) save(ctx context.Context, orders []order.Order) (order.Saved, error) {
	bo := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.WriteTimeout)
		start := time.Now()
		saved, err := c.store.Save(wctx, orders)
		took := time.Since(start)
		cancel()
		if err == nil || errors.Is(err, order.ErrRejected) {
			// Either way the database took the statement and answered.
			c.resume()
			if err == nil {
				c.cfg.Metrics.committed(len(orders), saved, took)
				c.log.Debug("batch committed", "messages", len(orders), "inserted", saved.Inserted, "reused_keys", len(saved.Reused))
			}
			return saved, err
		}
		c.hold(len(orders), err)
		if err := bo.Sleep(ctx); err != nil {
			return order.Saved{}, err
		}
	}
}

// settle acks a committed batch message by message: the orders that reuse
// their user's idempotency key for a different order were not written and
// go to the DLQ with that reason; the first order under the key stands.
func (c *Consumer) settle(ctx context.Context, dlq *broker.ConfirmChannel, held []amqp.Delivery, reused []int) {
	bad := make(map[int]bool, len(reused))
	for _, i := range reused {
		bad[i] = true
	}
	for i, d := range held {
		if bad[i] {
			c.deadLetter(ctx, dlq, d, order.ErrKeyReused)
		} else {
			c.ack(d)
		}
	}
}

// hold records a failed attempt. Only the first of a hold is logged, so a
// long outage costs one line, not one per attempt.
func (c *Consumer) hold(messages int, err error) {
	var coded interface{ SQLState() string }
	code := ""
	if errors.As(err, &coded) {
		code = coded.SQLState()
	}
	c.mu.Lock()
	first := c.writes.Since.IsZero()
	if first {
		c.writes = WriteStatus{Since: time.Now().UTC()}
	}
	c.writes.SQLState, c.writes.Error = code, err.Error()
	c.writes.Attempts++
	c.mu.Unlock()
	c.cfg.Metrics.setHeld(true)
	if first {
		c.log.Warn("database unavailable, holding batch unacked", "messages", messages, "sqlstate", code, "err", err)
	}
}

// resume ends a hold, logging how long it lasted.
func (c *Consumer) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.writes
	c.cfg.Metrics.setHeld(false)
	if !w.Since.IsZero() {
		// Logged before /ready turns ready, so whoever sees ready finds the line.
		c.log.Info("database writable again",
			"held_for", time.Since(w.Since).Round(time.Millisecond), "attempts", w.Attempts, "sqlstate", w.SQLState)
	}
	c.writes = WriteStatus{}
}

// isolate handles a batch the database rejected for what one of its orders
// holds: it writes the orders one by one, so one bad order cannot hold back
// the others, and dead-letters each order rejected on its own, with the
// reason. A database failure meanwhile is held and retried by save as for
// any batch. Like process, it returns false when it stopped with messages
// unsettled.
func (c *Consumer) isolate(ctx context.Context, dlq *broker.ConfirmChannel, orders []order.Order, held []amqp.Delivery, batchErr error) bool {
	c.log.Warn("batch rejected by the database, writing orders one by one", "messages", len(orders), "err", batchErr)
	for i, o := range orders {
		saved, err := c.save(ctx, []order.Order{o})
		switch {
		case err == nil && len(saved.Reused) > 0:
			c.deadLetter(ctx, dlq, held[i], order.ErrKeyReused)
		case err == nil:
			c.ack(held[i])
		case ctx.Err() != nil:
			return false
		default: // order.ErrRejected
			c.deadLetter(ctx, dlq, held[i], err)
		}
	}
	return true
}

// deadLetter moves a message that can never become an order into the DLQ
// with the reason in a header, then acks the original. If the DLQ publish is
// not confirmed, the message is rejected without requeue instead, and the
// queue's dead-letter settings route it to the same DLQ (with x-death but
// without our reason). Either way it is never redelivered in a loop. Its
// log lines carry the message's correlation_id (the gateway's request id)
// as request_id, and the copy keeps it.
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
	class := reasonOf(reason)
	if err != nil {
		class = ReasonPublishFailed
		c.log.Warn("dead-letter publish failed, rejecting instead",
			"message_id", d.MessageId, "request_id", d.CorrelationId, "err", err)
		if rerr := d.Reject(false); rerr != nil {
			c.log.Warn("reject failed; the broker redelivers on reconnect",
				"message_id", d.MessageId, "request_id", d.CorrelationId, "err", rerr)
		}
	} else {
		c.ack(d)
	}
	c.cfg.Metrics.deadLetter(class)
	c.log.Warn("message dead-lettered", "message_id", d.MessageId, "request_id", d.CorrelationId,
		"queue", c.cfg.Topology.DeadLetterQueue(), "reason", reason.Error(), "reason_class", class)
}

// ack acknowledges one delivery. A failed ack means the channel is gone; the
// broker redelivers the message and the idempotent insert skips it.
func (c *Consumer) ack(d amqp.Delivery) {
	if err := d.Ack(false); err != nil {
		c.log.Debug("ack failed; message will be redelivered and deduplicated",
			"message_id", d.MessageId, "request_id", d.CorrelationId, "err", err)
	}
}

func consumerTag() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("billing-%s-%d", host, os.Getpid())
}
