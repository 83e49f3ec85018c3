// Package dlq is the way back from billing's dead-letter queue: List browses
// it without losing anything and groups the messages by reason; Replay moves
// chosen messages back to the queue with publisher confirms, removing each
// from the dead-letter queue only after its copy is confirmed.
//
// It knows queues and headers, not orders: billing's consumer deduplicates
// on message_id, which is what makes a replay safe to repeat.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/broker"
)

// Headers a replayed copy carries.
const (
	HeaderReplayedAt  = "x-replayed-at"
	HeaderReplayCount = "x-replay-count"
)

// ReasonUnknown groups messages that say nothing about why they died.
const ReasonUnknown = "unknown"

// rabbitHeaders are what RabbitMQ adds when it dead-letters a message or
// hands it out again; a replayed copy starts without them.
var rabbitHeaders = []string{
	"x-death",
	"x-first-death-reason", "x-first-death-queue", "x-first-death-exchange",
	"x-last-death-reason", "x-last-death-queue", "x-last-death-exchange",
	"x-delivery-count",
}

// ErrNoQueue means the dead-letter queue does not exist. The tool never
// declares it: a declare with other arguments than the topology's would
// create the wrong queue or fail.
var ErrNoQueue = errors.New("dead-letter queue does not exist")

// Config names the queues and the headers billing sets when it
// dead-letters a message itself.
type Config struct {
	// DeadLetterQueue is read; Queue receives replayed messages through the
	// default exchange.
	DeadLetterQueue string
	Queue           string
	// ReasonHeader holds billing's reason, FailedAtHeader the RFC 3339 time.
	ReasonHeader   string
	FailedAtHeader string
	// DeadLetterHeaders are all the headers billing adds when it
	// dead-letters (the two above included); a replayed copy leaves them
	// out, as it leaves out RabbitMQ's x-death and x-*-death-* headers.
	DeadLetterHeaders []string
	// PublishTimeout bounds the wait for one confirm; zero means 10s.
	PublishTimeout time.Duration
}

// Message is what the tool tells about one dead letter.
type Message struct {
	ID     string
	Reason string
	// DiedAt is when it was dead-lettered, or when it was published if
	// nothing says; zero when unknown.
	DiedAt time.Time
}

// Group summarizes the dead letters that share a reason.
type Group struct {
	Reason      string
	Count       int
	First, Last time.Time // zero when no message of the group has a time
	// SampleID is the first message id of the group in queue order.
	SampleID string
}

// Filter chooses the messages to replay. A message must match every
// non-empty criterion; the zero Filter matches everything.
type Filter struct {
	// Reasons: the message's reason contains one of them.
	Reasons []string
	// IDs: the message_id is one of them.
	IDs []string
	// Max moves at most that many; zero means no limit.
	Max int
}

// Match reports whether m is chosen (Max aside).
func (f Filter) Match(m Message) bool {
	if len(f.Reasons) > 0 && !slices.ContainsFunc(f.Reasons, func(r string) bool { return strings.Contains(m.Reason, r) }) {
		return false
	}
	if len(f.IDs) > 0 && !slices.Contains(f.IDs, m.ID) {
		return false
	}
	return true
}

// Report is the outcome of a replay.
type Report struct {
	// Moved lists the messages moved (with DryRun: that would move), in
	// queue order.
	Moved []Message
	// Kept counts the messages looked at and left in the dead-letter queue
	// (once Max messages are chosen, the rest are not looked at).
	Kept int
}

// Tool works on one broker connection. It opens its own channels and is
// used by one goroutine at a time.
type Tool struct {
	conn *amqp.Connection
	cfg  Config
}

// New returns a tool over conn.
func New(conn *amqp.Connection, cfg Config) *Tool {
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	return &Tool{conn: conn, cfg: cfg}
}

// List returns the dead letters grouped by reason, most frequent first.
// Every message stays in the queue.
func (t *Tool) List(ctx context.Context) ([]Group, error) {
	var groups []Group
	index := map[string]int{}
	err := t.browse(ctx, func(d *amqp.Delivery) (bool, error) {
		m := t.describe(d)
		i, ok := index[m.Reason]
		if !ok {
			i = len(groups)
			index[m.Reason] = i
			groups = append(groups, Group{Reason: m.Reason})
		}
		g := &groups[i]
		g.Count++
		if g.SampleID == "" {
			g.SampleID = m.ID
		}
		if !m.DiedAt.IsZero() {
			if g.First.IsZero() || m.DiedAt.Before(g.First) {
				g.First = m.DiedAt
			}
			if m.DiedAt.After(g.Last) {
				g.Last = m.DiedAt
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(groups, func(a, b Group) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	return groups, nil
}

// Replay moves the messages f chooses back to the queue, in queue order:
// each copy is published persistent and mandatory and confirmed before the
// dead letter is acked. The first failure stops the replay, with the failed
// message and every later one still in the dead-letter queue. With dryRun
// it only reports what would move.
func (t *Tool) Replay(ctx context.Context, f Filter, dryRun bool) (Report, error) {
	var rep Report
	var pub *broker.ConfirmChannel
	if !dryRun {
		var err error
		if pub, err = broker.NewConfirmChannel(t.conn); err != nil {
			return rep, fmt.Errorf("dlq: %w", err)
		}
		defer pub.Close()
	}
	err := t.browse(ctx, func(d *amqp.Delivery) (bool, error) {
		m := t.describe(d)
		if f.Max > 0 && len(rep.Moved) >= f.Max {
			return false, errEnough
		}
		if !f.Match(m) {
			rep.Kept++
			return false, nil
		}
		if dryRun {
			rep.Moved = append(rep.Moved, m)
			return false, nil
		}
		pctx, cancel := context.WithTimeout(ctx, t.cfg.PublishTimeout)
		defer cancel()
		if err := pub.Publish(pctx, "", t.cfg.Queue, t.copyOf(d, time.Now())); err != nil {
			return false, fmt.Errorf("dlq: replay message %q to %s: %w", m.ID, t.cfg.Queue, err)
		}
		// The copy is the broker's now. If this ack is lost the dead letter
		// comes back too, and billing's message_id check drops the second.
		if err := d.Ack(false); err != nil {
			rep.Moved = append(rep.Moved, m)
			return true, fmt.Errorf("dlq: message %q replayed but not removed from %s: %w", m.ID, t.cfg.DeadLetterQueue, err)
		}
		rep.Moved = append(rep.Moved, m)
		return true, nil
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	return rep, err
}

// errEnough ends a browse early without an error.
var errEnough = errors.New("enough")

// browse hands visit each message that is in the dead-letter queue when it
// starts, in queue order, fetched with basic.get and manual ack. visit
// returns whether it settled the delivery; every delivery it did not settle
// is held until the end (so that the next get returns the next message, and
// messages dead-lettered meanwhile are not looked at) and then returned to
// the queue. A visit error ends the browse.
func (t *Tool) browse(ctx context.Context, visit func(d *amqp.Delivery) (settled bool, err error)) (err error) {
	ch, err := t.conn.Channel()
	if err != nil {
		return fmt.Errorf("dlq: open channel: %w", err)
	}
	// Closing the channel also returns whatever is still unacked, should
	// the nack below not be sent.
	defer ch.Close()

	// Passive: checks the queue without declaring it (arguments ignored).
	q, err := ch.QueueDeclarePassive(t.cfg.DeadLetterQueue, true, false, false, false, nil)
	if err != nil {
		var aerr *amqp.Error
		if errors.As(err, &aerr) && aerr.Code == amqp.NotFound {
			return fmt.Errorf("dlq: %q: %w", t.cfg.DeadLetterQueue, ErrNoQueue)
		}
		return fmt.Errorf("dlq: inspect %q: %w", t.cfg.DeadLetterQueue, err)
	}

	var held uint64 // highest unsettled delivery tag, 0 for none
	defer func() {
		if held == 0 {
			return
		}
		// One nack returns every unsettled delivery up to held; settled
		// ones are not affected.
		if nerr := ch.Nack(held, true, true); nerr != nil && err == nil {
			err = fmt.Errorf("dlq: return messages to %s: %w", t.cfg.DeadLetterQueue, nerr)
		}
	}()
	for range q.Messages {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, ok, err := ch.Get(t.cfg.DeadLetterQueue, false)
		if err != nil {
			return fmt.Errorf("dlq: get from %s: %w", t.cfg.DeadLetterQueue, err)
		}
		if !ok {
			return nil // someone else took the rest
		}
		settled, err := visit(&d)
		if !settled {
			held = d.DeliveryTag
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// describe reads the id, reason and time of death of d: billing's reason
// header, else the most recent x-death reason, else ReasonUnknown; the time
// from billing's header, else x-death, else the message timestamp.
func (t *Tool) describe(d *amqp.Delivery) Message {
	m := Message{ID: d.MessageId, Reason: ReasonUnknown}
	var death amqp.Table
	if deaths, ok := d.Headers["x-death"].([]any); ok && len(deaths) > 0 {
		death, _ = deaths[0].(amqp.Table)
	}
	if r := text(d.Headers[t.cfg.ReasonHeader]); r != "" {
		m.Reason = r
	} else if r := text(death["reason"]); r != "" {
		m.Reason = r
	}
	if at, err := time.Parse(time.RFC3339Nano, text(d.Headers[t.cfg.FailedAtHeader])); err == nil {
		m.DiedAt = at
	} else if at, ok := death["time"].(time.Time); ok {
		m.DiedAt = at
	} else {
		m.DiedAt = d.Timestamp
	}
	return m
}

// copyOf returns the publishing that replays d: the same properties, body
// and headers, without the dead-letter bookkeeping, persistent, with the
// replay's time and count.
func (t *Tool) copyOf(d *amqp.Delivery, now time.Time) amqp.Publishing {
	headers := amqp.Table{}
	for k, v := range d.Headers {
		if !slices.Contains(rabbitHeaders, k) && !slices.Contains(t.cfg.DeadLetterHeaders, k) {
			headers[k] = v
		}
	}
	headers[HeaderReplayedAt] = now.UTC().Format(time.RFC3339Nano)
	headers[HeaderReplayCount] = ReplayCount(d.Headers) + 1
	return amqp.Publishing{
		Headers:         headers,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    amqp.Persistent,
		Priority:        d.Priority,
		CorrelationId:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		Expiration:      d.Expiration,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		UserId:          d.UserId,
		AppId:           d.AppId,
		Body:            d.Body,
	}
}

// ReplayCount reads the x-replay-count header: how many times the message
// was replayed before.
func ReplayCount(h amqp.Table) int64 {
	switch v := h[HeaderReplayCount].(type) {
	case int64:
		return v
	case int32:
		return int64(v)
	case int16:
		return int64(v)
	case int8:
		return int64(v)
	default:
		return 0
	}
}

func text(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	default:
		return ""
	}
}
