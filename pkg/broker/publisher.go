package broker

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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

// Defaults of a Publisher, chosen from BenchmarkPublish (64 concurrent
// callers, quorum queue, 2 cores shared with the broker; medians of three
// runs): 2 channels 16,000-23,000 msgs/s, 1 channel 14,000-16,000, 4 and
// 8 channels 14,000-15,000, the former 16 channels with one publish each
// 6,000-7,000. A quorum queue confirms a whole fsync batch at once, so
// what raises throughput is many publishes waiting together; beyond two
// channels (two channel processes in the broker) more only split the
// batches. The in-flight limit made no difference as long as it exceeded
// the callers per channel; it bounds what one channel has outstanding.
const (
	DefaultChannels = 2
	DefaultInFlight = 256
)

// ConfirmChannel is a channel in confirm mode that concurrent callers
// share: many publishes may wait for their confirms at once, up to the
// channel's in-flight limit. Sending is serialised by a lock; waiting for
// the confirm is not.
//
// A return is matched to its publish by message id. RabbitMQ sends
// basic.return before the basic.ack of the same message and the library
// hands both over from the connection's reader goroutine in that order, so
// once a publish's confirm is done, its return, if any, is already in the
// returns buffer. Every publish drains that buffer, under a lock, into the
// record of the outstanding publishes; for the match to be unambiguous, a
// publish waits while another one with the same message id is outstanding
// on the channel.
type ConfirmChannel struct {
	ch *amqp.Channel
	// slots holds one token per outstanding publish: registered and not
	// yet confirmed, including publishes whose caller gave up. A token is
	// released only after the confirm and after the buffer was drained, so
	// returns waiting in the buffer never outnumber the slots, and the
	// buffer, as large as the slots, never blocks the connection's reader
	// (which would stall every confirm, and after the library's notify
	// timeout drop the return: a false success).
	slots chan struct{}
	// sending is the lock held while a message is written to the socket.
	// A channel rather than a sync.Mutex, so that callers queued behind a
	// write that a resource alarm holds up can still give up at once.
	sending chan struct{}

	// retired is set when the Publisher replaced the channel (renew): its
	// closing is then expected, not a reason to reconnect.
	retired atomic.Bool

	mu      sync.Mutex           // guards returns and pending; never held across I/O
	returns chan amqp.Return     // nil once the library closed it
	pending map[string]*inFlight // outstanding publishes by message id
}

// inFlight is one outstanding publish. Guarded by ConfirmChannel.mu.
type inFlight struct {
	returned *amqp.Return
	// settled is made by a publish of the same message id that waits for
	// this one, and closed when this one is settled.
	settled chan struct{}
}

// NewConfirmChannel opens a channel on conn and puts it in confirm mode,
// allowing DefaultInFlight unconfirmed publishes at a time.
func NewConfirmChannel(conn *amqp.Connection) (*ConfirmChannel, error) {
	return newConfirmChannel(conn, DefaultInFlight)
}

func newConfirmChannel(conn *amqp.Connection, limit int) (*ConfirmChannel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("broker: open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("broker: confirm mode: %w", err)
	}
	return &ConfirmChannel{
		ch:      ch,
		slots:   make(chan struct{}, limit),
		sending: make(chan struct{}, 1),
		returns: ch.NotifyReturn(make(chan amqp.Return, limit)),
		pending: make(map[string]*inFlight, limit),
	}, nil
}

// Close closes the channel.
func (c *ConfirmChannel) Close() error { return c.ch.Close() }

// closeWhenIdle closes the channel once no publish is outstanding on it (at
// most a minute later: an abandoned publish holds its slot until the
// broker answers), or leaves it to the connection when that ends first.
func (c *ConfirmChannel) closeWhenIdle(connDone <-chan struct{}) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(time.Minute)
	for len(c.slots) > 0 {
		select {
		case <-tick.C:
		case <-deadline:
			_ = c.ch.Close()
			return
		case <-connDone:
			return
		}
	}
	_ = c.ch.Close()
}

// IsClosed reports whether the broker or the client closed the channel.
func (c *ConfirmChannel) IsClosed() bool { return c.ch.IsClosed() }

// Publish sends msg as mandatory and waits for the broker's confirm until ctx
// ends. It returns nil only when the broker has taken responsibility for the
// message: confirmed and routed to a queue. It is safe for concurrent use.
func (c *ConfirmChannel) Publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	return c.publish(ctx, nil, exchange, key, msg)
}

// publish is Publish that also gives up, with ErrBlocked, when abort is
// closed before the confirm arrives; nothing is sent once abort is closed.
func (c *ConfirmChannel) publish(ctx context.Context, abort <-chan struct{}, exchange, key string, msg amqp.Publishing) error {
	if err := acquire(ctx, abort, c.slots, "waiting for room on the channel"); err != nil {
		return err
	}
	id := msg.MessageId
	p, err := c.register(ctx, abort, id)
	if err != nil {
		<-c.slots
		return err
	}
	if err := acquire(ctx, abort, c.sending, "waiting to send"); err != nil {
		c.settle(id, p)
		return err
	}
	if isClosed(abort) {
		<-c.sending
		c.settle(id, p)
		return ErrBlocked
	}
	dc, err := c.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	<-c.sending
	if err != nil {
		c.settle(id, p)
		return fmt.Errorf("%w: publish: %w", ErrUnavailable, err)
	}

	select {
	case <-dc.Done():
	case <-ctx.Done():
		go c.settleWhenDone(dc, id, p)
		return fmt.Errorf("%w: waiting for confirm: %w", ErrUnavailable, ctx.Err())
	case <-abort:
		go c.settleWhenDone(dc, id, p)
		return ErrBlocked
	}
	returned := c.settle(id, p)
	switch {
	case !dc.Acked() && c.ch.IsClosed():
		// The library nacks every outstanding publish when the channel or
		// connection goes away; that is not the broker refusing it.
		return fmt.Errorf("%w: channel closed before the confirm", ErrUnavailable)
	case !dc.Acked():
		return ErrNacked
	case returned != nil:
		return fmt.Errorf("%w: %s", ErrUnroutable, returned.ReplyText)
	}
	return nil
}

// acquire takes a token of sem, giving up when ctx ends or abort closes.
func acquire(ctx context.Context, abort <-chan struct{}, sem chan struct{}, what string) error {
	select {
	case sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, ctx.Err())
	case <-abort:
		return ErrBlocked
	}
}

// register records a publish of message id id as outstanding, first
// waiting for an outstanding publish of the same id to be settled.
func (c *ConfirmChannel) register(ctx context.Context, abort <-chan struct{}, id string) (*inFlight, error) {
	c.mu.Lock()
	for {
		c.drainLocked()
		prev, busy := c.pending[id]
		if !busy {
			break
		}
		if prev.settled == nil {
			prev.settled = make(chan struct{})
		}
		wait := prev.settled
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: waiting for the publish of the same message id: %w", ErrUnavailable, ctx.Err())
		case <-abort:
			return nil, ErrBlocked
		}
		c.mu.Lock()
	}
	p := &inFlight{}
	c.pending[id] = p
	c.mu.Unlock()
	return p, nil
}

// settleWhenDone keeps an abandoned publish's slot and message id until the
// broker has answered it, so that its return cannot be taken for another
// publish's. The library settles every outstanding confirm when the channel
// closes, so this ends.
func (c *ConfirmChannel) settleWhenDone(dc *amqp.DeferredConfirmation, id string, p *inFlight) {
	<-dc.Done()
	c.settle(id, p)
}

// settle ends an outstanding publish (confirmed, or never sent), releases
// its slot and returns its return, if the broker sent one.
func (c *ConfirmChannel) settle(id string, p *inFlight) *amqp.Return {
	c.mu.Lock()
	c.drainLocked()
	delete(c.pending, id)
	if p.settled != nil {
		close(p.settled)
	}
	c.mu.Unlock()
	<-c.slots
	return p.returned
}

// drainLocked moves every return in the buffer to its outstanding publish.
// Each returned message is outstanding until its confirm, which follows
// the return, so a return always finds its publish; one that would not is
// dropped. Callers hold c.mu.
func (c *ConfirmChannel) drainLocked() {
	for {
		select {
		case r, ok := <-c.returns:
			if !ok {
				c.returns = nil // channel gone; a nil channel is never ready
				return
			}
			if p := c.pending[r.MessageId]; p != nil {
				p.returned = &r
			}
		default:
			return
		}
	}
}

// PublisherOptions tunes a Publisher; zero fields take the defaults.
type PublisherOptions struct {
	// Channels is how many confirm channels share the connection;
	// DefaultChannels when zero.
	Channels int
	// InFlight bounds the unconfirmed publishes per channel;
	// DefaultInFlight when zero.
	InFlight int
}

// Publisher publishes confirmed, persistent messages over one long-lived
// connection that it re-establishes after a broker restart. While it is not
// connected, or the broker has blocked the connection on a resource alarm,
// Publish fails fast with ErrUnavailable instead of hanging.
type Publisher struct {
	cfg  Config
	topo Topology
	log  *slog.Logger
	opts PublisherOptions
	seed maphash.Seed

	mu     sync.RWMutex
	pool   *channelPool // nil while disconnected
	status StatusBox
}

type channelPool struct {
	slots []channelSlot
	done  chan struct{} // closed when the connection behind the pool is gone
	conn  *amqp.Connection
	// blockedC is closed while a resource alarm blocks the connection, so
	// that publishes waiting for a confirm give up at once; replaced by an
	// open channel when the alarm clears. It is the only record of the
	// alarm. Guarded by Publisher.mu.
	blockedC chan struct{}
}

// channelSlot holds one of the pool's channels, replaced when the broker
// refuses a publish on it (Publisher.renew).
type channelSlot struct {
	cc atomic.Pointer[ConfirmChannel]
	mu sync.Mutex // serialises renewals of this slot
	// since is when the slot's channel was opened. Guarded by mu.
	since time.Time
}

// minChannelAge is how long a channel serves before a refused publish may
// replace it: while a queue refuses everything (no quorum of its replicas
// is up) the channels are renewed once a second, not once per publish.
const minChannelAge = time.Second

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
// publishes over the given number of confirm channels (DefaultChannels
// when zero), each with DefaultInFlight publishes in flight at most.
func NewPublisher(cfg Config, topo Topology, channels int, log *slog.Logger) *Publisher {
	return NewPublisherWithOptions(cfg, topo, PublisherOptions{Channels: channels}, log)
}

// NewPublisherWithOptions is NewPublisher with every tuning knob.
func NewPublisherWithOptions(cfg Config, topo Topology, opts PublisherOptions, log *slog.Logger) *Publisher {
	if opts.Channels <= 0 {
		opts.Channels = DefaultChannels
	}
	if opts.InFlight <= 0 {
		opts.InFlight = DefaultInFlight
	}
	return &Publisher{cfg: cfg, topo: topo, log: log, opts: opts, seed: maphash.MakeSeed()}
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
		slots: make([]channelSlot, p.opts.Channels), done: make(chan struct{}), conn: conn,
		blockedC: make(chan struct{}),
	}
	for i := range pool.slots {
		cc, err := newConfirmChannel(conn, p.opts.InFlight)
		if err != nil {
			return err
		}
		pool.slots[i].cc.Store(cc)
		pool.slots[i].since = time.Now()
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
// as a persistent message and returns once RabbitMQ confirms it. It is
// safe for concurrent use: publishes share the channels and wait for their
// confirms together. ctx bounds the whole call: waiting for room on a
// channel and for the confirm. A resource alarm ends it at once with
// ErrBlocked, even while it waits for the confirm: RabbitMQ announces the
// block only when a publish reaches the blocked connection, and that
// publish, and any other already sent, would otherwise wait for the whole
// deadline.
func (p *Publisher) Publish(ctx context.Context, msg amqp.Publishing) error {
	pool, blockedC := p.current()
	if pool == nil {
		return fmt.Errorf("%w: not connected", ErrUnavailable)
	}
	if isClosed(blockedC) {
		return ErrBlocked
	}
	if isClosed(pool.done) {
		return fmt.Errorf("%w: connection lost", ErrUnavailable)
	}
	// The same message id always goes to the same channel, where a second
	// publish of it waits for the first (see ConfirmChannel); different
	// ids spread evenly.
	slot := &pool.slots[maphash.String(p.seed, msg.MessageId)%uint64(len(pool.slots))]
	cc := slot.cc.Load()

	msg.DeliveryMode = amqp.Persistent
	err := cc.publish(ctx, blockedC, "", p.topo.Queue, msg)
	switch {
	case errors.Is(err, ErrNacked) && !pool.conn.IsClosed():
		p.renew(pool, slot, cc)
	case cc.IsClosed() && !cc.retired.Load() && !pool.conn.IsClosed():
		// A channel-level error: rather than run with a dead channel,
		// start over on a fresh connection.
		p.log.Warn("rabbitmq channel closed, reconnecting", "err", err)
		_ = pool.conn.Close()
	}
	return err
}

// renew replaces the slot's channel after the broker refused a publish on
// it. RabbitMQ 3.10 binds a channel to the quorum queue leader its first
// publish reached; a channel whose first publish met a leader election (the
// leader's node just died) keeps sending to the dead node and has every
// publish refused until that node comes back, while a fresh channel finds
// the new leader at once (e2e/fault TestClusterNodeFailures). The old
// channel is closed once the publishes still waiting on it are answered.
func (p *Publisher) renew(pool *channelPool, slot *channelSlot, refused *ConfirmChannel) {
	slot.mu.Lock()
	defer slot.mu.Unlock()
	if slot.cc.Load() != refused || time.Since(slot.since) < minChannelAge {
		return // renewed already, or too recently to tell a new channel would help
	}
	fresh, err := newConfirmChannel(pool.conn, p.opts.InFlight)
	if err != nil {
		p.log.Warn("rabbitmq refused a publish; cannot open a new channel", "err", err)
		return
	}
	slot.cc.Store(fresh)
	slot.since = time.Now()
	refused.retired.Store(true)
	p.log.Warn("rabbitmq refused a publish; publishing on a new channel")
	go refused.closeWhenIdle(pool.done)
}
