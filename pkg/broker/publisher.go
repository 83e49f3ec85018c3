package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Errors of a confirmed publish, besides ErrUnavailable.
var (
	// ErrNacked: the broker refused the message (a nack). Nothing was queued.
	ErrNacked = fmt.Errorf("%w: message not confirmed by the broker", ErrUnavailable)
	// ErrUnroutable: no queue took the message (it was returned).
	ErrUnroutable = fmt.Errorf("%w: message returned unroutable", ErrUnavailable)
	// ErrBlocked: a resource alarm blocks the connection; RabbitMQ reads
	// nothing from it until the alarm clears. A message already sent may
	// still be queued then: a client retries it under the same message id.
	ErrBlocked = fmt.Errorf("%w: connection blocked by a broker resource alarm", ErrUnavailable)
)

// ConfirmChannel is a channel in confirm mode used by one publisher at a
// time. Exclusive use is what lets a return be matched to its publish: the
// broker sends basic.return before the basic.ack of the same message, and
// the library delivers both in that order.
type ConfirmChannel struct {
	ch      *amqp.Channel
	returns chan amqp.Return
}

// NewConfirmChannel opens a channel on conn and puts it in confirm mode.
func NewConfirmChannel(conn *amqp.Connection) (*ConfirmChannel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("broker: open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("broker: confirm mode: %w", err)
	}
	// Buffered and drained by Publish; a few stale returns from publishes
	// that timed out fit without blocking the connection's reader.
	returns := ch.NotifyReturn(make(chan amqp.Return, 64))
	return &ConfirmChannel{ch: ch, returns: returns}, nil
}

// Close closes the channel.
func (c *ConfirmChannel) Close() error { return c.ch.Close() }

// IsClosed reports whether the broker or the client closed the channel.
func (c *ConfirmChannel) IsClosed() bool { return c.ch.IsClosed() }

// Publish sends msg as mandatory and waits for the broker's confirm until ctx
// ends. It returns nil only when the broker has taken responsibility for the
// message: confirmed and routed to a queue.
func (c *ConfirmChannel) Publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	return c.publish(ctx, nil, exchange, key, msg)
}

// publish is Publish that also gives up, with ErrBlocked, when abort is
// closed before the confirm arrives.
func (c *ConfirmChannel) publish(ctx context.Context, abort <-chan struct{}, exchange, key string, msg amqp.Publishing) error {
	dc, err := c.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	if err != nil {
		return fmt.Errorf("%w: publish: %w", ErrUnavailable, err)
	}
	var acked bool
	select {
	case <-dc.Done():
		acked = dc.Acked()
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for confirm: %w", ErrUnavailable, ctx.Err())
	case <-abort:
		return ErrBlocked
	}
	if !acked {
		return ErrNacked
	}
	for {
		select {
		case r, ok := <-c.returns:
			if !ok {
				return nil
			}
			if r.MessageId == msg.MessageId {
				return fmt.Errorf("%w: %s", ErrUnroutable, r.ReplyText)
			}
		default:
			return nil
		}
	}
}

// Publisher publishes confirmed, persistent messages over one long-lived
// connection that it re-establishes after a broker restart. While it is not
// connected, or the broker has blocked the connection on a resource alarm,
// Publish fails fast with ErrUnavailable instead of hanging.
type Publisher struct {
	cfg      Config
	topo     Topology
	log      *slog.Logger
	channels int

	mu     sync.RWMutex
	pool   *channelPool // nil while disconnected
	status StatusBox
}

type channelPool struct {
	free chan *ConfirmChannel
	done chan struct{} // closed when the connection behind the pool is gone
	conn *amqp.Connection
	// blockedC is closed while a resource alarm blocks the connection, so
	// that publishes waiting for a confirm give up at once; replaced by an
	// open channel when the alarm clears. It is the only record of the
	// alarm. Guarded by Publisher.mu.
	blockedC chan struct{}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// current returns the live pool (nil while disconnected) and its alarm
// channel.
func (p *Publisher) current() (*channelPool, chan struct{}) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.pool == nil {
		return nil, nil
	}
	return p.pool, p.pool.blockedC
}

// NewPublisher returns a publisher that declares topo on every connection and
// publishes over a pool of channels (one publish per channel at a time).
func NewPublisher(cfg Config, topo Topology, channels int, log *slog.Logger) *Publisher {
	if channels <= 0 {
		channels = 16
	}
	return &Publisher{cfg: cfg, topo: topo, log: log, channels: channels}
}

// Run keeps the connection alive until ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	return Supervise(ctx, p.cfg, p.log, p.session)
}

// Status reports whether the publisher can publish now.
func (p *Publisher) Status() Status {
	s := p.status.Get()
	if _, blockedC := p.current(); s.Connected && blockedC != nil && isClosed(blockedC) {
		return Status{Error: "connection blocked by a broker resource alarm"}
	}
	return s
}

// Readiness reports Status for /ready.
func (p *Publisher) Readiness() (bool, any) { return p.Status().Readiness() }

func (p *Publisher) session(ctx context.Context, conn *amqp.Connection) error {
	// Registered first so a close or alarm during setup is not missed.
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))

	if err := p.declare(conn); err != nil {
		p.status.Set(Status{Error: err.Error()})
		p.log.Error("rabbitmq topology", "err", err)
		return err
	}

	pool := &channelPool{
		free: make(chan *ConfirmChannel, p.channels), done: make(chan struct{}), conn: conn,
		blockedC: make(chan struct{}),
	}
	for range p.channels {
		cc, err := NewConfirmChannel(conn)
		if err != nil {
			return err
		}
		pool.free <- cc
	}
	p.mu.Lock()
	p.pool = pool
	p.mu.Unlock()
	p.status.Set(Status{Connected: true})

	defer func() {
		p.mu.Lock()
		p.pool = nil
		p.mu.Unlock()
		close(pool.done)
		p.status.Set(Status{Error: "reconnecting to rabbitmq"})
	}()

	for {
		select {
		case b, ok := <-blocked:
			if !ok {
				blocked = nil
				continue
			}
			p.mu.Lock()
			switch wasBlocked := isClosed(pool.blockedC); {
			case b.Active && !wasBlocked:
				close(pool.blockedC)
			case !b.Active && wasBlocked:
				pool.blockedC = make(chan struct{})
			}
			p.mu.Unlock()
			if b.Active {
				p.log.Warn("rabbitmq blocked publishing", "reason", b.Reason)
			} else {
				p.log.Info("rabbitmq unblocked publishing")
			}
		case err, ok := <-closed:
			if ok && err != nil {
				return fmt.Errorf("connection closed: %w", err)
			}
			return errors.New("connection closed")
		case <-ctx.Done():
			return nil
		}
	}
}

func (p *Publisher) declare(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("broker: open channel: %w", err)
	}
	defer ch.Close()
	return p.topo.Declare(ch)
}

// Publish sends msg to the topology's queue through the default exchange
// as a persistent
// message and returns once RabbitMQ confirms it. ctx bounds the whole call:
// waiting for a free channel and for the confirm. A resource alarm ends it
// at once with ErrBlocked, even while it waits for the confirm: RabbitMQ
// announces the block only when a publish reaches the blocked connection,
// and that publish, and any other already sent, would otherwise wait for
// the whole deadline.
func (p *Publisher) Publish(ctx context.Context, msg amqp.Publishing) error {
	pool, blockedC := p.current()
	if pool == nil {
		return fmt.Errorf("%w: not connected", ErrUnavailable)
	}
	if isClosed(blockedC) {
		return ErrBlocked
	}

	var cc *ConfirmChannel
	select {
	case cc = <-pool.free:
	case <-pool.done:
		return fmt.Errorf("%w: connection lost", ErrUnavailable)
	case <-ctx.Done():
		return fmt.Errorf("%w: no free channel: %w", ErrUnavailable, ctx.Err())
	}

	msg.DeliveryMode = amqp.Persistent
	var err error
	select {
	case <-blockedC: // blocked while waiting for a channel: send nothing
		err = ErrBlocked
	default:
		err = cc.publish(ctx, blockedC, "", p.topo.Queue, msg)
	}
	if cc.IsClosed() && !pool.conn.IsClosed() {
		// A channel-level error: rather than run with a shrinking pool,
		// start over on a fresh connection.
		p.log.Warn("rabbitmq channel closed, reconnecting", "err", err)
		_ = pool.conn.Close()
	}
	pool.free <- cc
	return err
}
