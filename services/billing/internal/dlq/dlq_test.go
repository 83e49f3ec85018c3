package dlq_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/broker"
	"moviestream/pkg/broker/brokertest"
	"moviestream/pkg/testenv"
	"moviestream/services/billing/internal/consumer"
	"moviestream/services/billing/internal/dlq"
)

// rig is a test's own queue and dead-letter queue, declared from the real
// topology, and a tool over them.
type rig struct {
	cfg  broker.Config
	topo broker.Topology
	ch   *amqp.Channel // the test's own inspection channel
	conn *amqp.Connection
}

func newRig(tb testing.TB) *rig {
	tb.Helper()
	cfg := brokertest.Config(tb)
	topo, ch := brokertest.Declared(tb, cfg)
	conn, err := broker.Dial(cfg)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return &rig{cfg: cfg, topo: topo, ch: ch, conn: conn}
}

// config is what cmd/dlq passes, pointed at the test's queues.
func (r *rig) config() dlq.Config {
	return dlq.Config{
		DeadLetterQueue:   r.topo.DeadLetterQueue(),
		Queue:             r.topo.Queue,
		ReasonHeader:      consumer.HeaderReason,
		FailedAtHeader:    consumer.HeaderFailedAt,
		DeadLetterHeaders: []string{consumer.HeaderReason, consumer.HeaderOriginalQueue, consumer.HeaderFailedAt},
	}
}

func (r *rig) tool(cfg dlq.Config) *dlq.Tool { return dlq.New(r.conn, cfg) }

// drain takes every message from queue (acking them) and returns them in
// order; the queue is empty afterwards.
func (r *rig) drain(tb testing.TB, queue string) []amqp.Delivery {
	tb.Helper()
	var out []amqp.Delivery
	for {
		d, ok, err := r.ch.Get(queue, true)
		if err != nil {
			tb.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// peekIDs returns the ids in queue, in order, leaving the queue as it was:
// the messages are fetched unacked on a channel of their own, which is then
// closed.
func (r *rig) peekIDs(tb testing.TB, queue string) []string {
	tb.Helper()
	ch := brokertest.Channel(tb, r.cfg)
	defer ch.Close()
	var ids []string
	for {
		d, ok, err := ch.Get(queue, false)
		if err != nil {
			tb.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			return ids
		}
		ids = append(ids, d.MessageId)
	}
}

// waitDepth waits until queue holds n ready messages (a closed channel's
// unacked messages return asynchronously).
func (r *rig) waitDepth(tb testing.TB, queue string, n int) {
	tb.Helper()
	testenv.WaitFor(tb, 10*time.Second, "depth of "+queue, func() bool { return brokertest.Depth(tb, r.ch, queue) == n })
}

func ids(ds []amqp.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.MessageId
	}
	return out
}

// sortedIDs is for a queue's content after messages were returned to it:
// where a returned message goes (head or tail) depends on the broker
// version, so only the set is compared.
func sortedIDs(ds []amqp.Delivery) []string {
	out := ids(ds)
	slices.Sort(out)
	return out
}

// emptyIsNil treats nil and empty slices alike.
var emptyIsNil = cmpopts.EquateEmpty()

func msgIDs(ms []dlq.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// deadLetter is a message as billing's consumer dead-letters it itself.
func deadLetter(id, reason string, at time.Time, body string) amqp.Publishing {
	return amqp.Publishing{
		MessageId:    id,
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Headers: amqp.Table{
			consumer.HeaderReason:        reason,
			consumer.HeaderOriginalQueue: "billing_queue",
			consumer.HeaderFailedAt:      at.UTC().Format(time.RFC3339Nano),
			"x-trace":                    "kept-" + id,
		},
		Body: []byte(body),
	}
}

// rejectInto makes RabbitMQ dead-letter a message itself: published to the
// main queue, then rejected without requeue (x-death reason "rejected").
func (r *rig) rejectInto(tb testing.TB, id string) {
	tb.Helper()
	before := brokertest.Depth(tb, r.ch, r.topo.DeadLetterQueue())
	brokertest.Publish(tb, r.cfg, r.topo.Queue, amqp.Publishing{MessageId: id, Body: []byte(`{}`)})
	d := getWait(tb, r.ch, r.topo.Queue)
	if err := d.Reject(false); err != nil {
		tb.Fatalf("reject: %v", err)
	}
	// Dead-lettering is asynchronous: wait until it is done.
	r.waitDepth(tb, r.topo.DeadLetterQueue(), before+1)
}

// exhaustInto makes RabbitMQ dead-letter a message at the queue's delivery
// limit: returned to the queue until the broker gives up on it. Nothing
// else may be on its way into the DLQ meanwhile.
func (r *rig) exhaustInto(tb testing.TB, id string) {
	tb.Helper()
	before := brokertest.Depth(tb, r.ch, r.topo.DeadLetterQueue())
	brokertest.Publish(tb, r.cfg, r.topo.Queue, amqp.Publishing{MessageId: id, Body: []byte(`{}`)})
	for i := 0; ; i++ {
		if i > broker.DeliveryLimit+1 {
			tb.Fatalf("message %q not dead-lettered after %d returns", id, i)
		}
		var d amqp.Delivery
		var got, dead bool
		testenv.WaitFor(tb, 10*time.Second, "message back or dead-lettered", func() bool {
			var err error
			if d, got, err = r.ch.Get(r.topo.Queue, false); err != nil {
				tb.Fatalf("get: %v", err)
			}
			dead = !got && brokertest.Depth(tb, r.ch, r.topo.DeadLetterQueue()) == before+1
			return got || dead
		})
		if dead {
			return
		}
		if err := d.Nack(false, true); err != nil {
			tb.Fatalf("nack: %v", err)
		}
	}
}

func getWait(tb testing.TB, ch *amqp.Channel, queue string) amqp.Delivery {
	tb.Helper()
	var d amqp.Delivery
	testenv.WaitFor(tb, 10*time.Second, "a message in "+queue, func() bool {
		var ok bool
		var err error
		if d, ok, err = ch.Get(queue, false); err != nil {
			tb.Fatalf("get: %v", err)
		}
		return ok
	})
	return d
}

func TestListGroupsByReason(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	start := time.Now().Add(-time.Second)
	t1 := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	t2 := t1.Add(90 * time.Minute)
	stamp := time.Date(2025, 2, 1, 8, 0, 0, 0, time.UTC)

	// Dead-lettered by billing with its reason (the later one first, so
	// that first/last come from the times, not the order).
	brokertest.Publish(t, r.cfg, r.topo.DeadLetterQueue(),
		deadLetter("bad-1", "invalid order message: malformed body", t2, `{`),
		deadLetter("bad-2", "invalid order message: malformed body", t1, `{"x"`),
		deadLetter("neg-1", "invalid order message: negative total", t1, `{}`))
	// Dead-lettered by RabbitMQ: x-death only.
	r.rejectInto(t, "rejected-1")
	r.exhaustInto(t, "limit-1")
	// Nothing says why; one with a timestamp, one without.
	brokertest.Publish(t, r.cfg, r.topo.DeadLetterQueue(),
		amqp.Publishing{MessageId: "bare-1", Timestamp: stamp, Body: []byte(`{}`)},
		amqp.Publishing{MessageId: "bare-2", Body: []byte(`{}`)})
	end := time.Now().Add(time.Second)

	groups, err := r.tool(r.config()).List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	// x-death times are the broker's: check the range, then compare the rest.
	for i, g := range groups {
		if g.Reason == "rejected" || g.Reason == "delivery_limit" {
			if g.First.Before(start.Truncate(time.Second)) || g.Last.After(end) || g.First.After(g.Last) {
				t.Errorf("%s: first %v last %v, want within [%v, %v]", g.Reason, g.First, g.Last, start, end)
			}
			groups[i].First, groups[i].Last = time.Time{}, time.Time{}
		}
	}
	want := []dlq.Group{
		{Reason: "invalid order message: malformed body", Count: 2, First: t1, Last: t2, SampleID: "bad-1"},
		{Reason: dlq.ReasonUnknown, Count: 2, First: stamp, Last: stamp, SampleID: "bare-1"},
		{Reason: "delivery_limit", Count: 1, SampleID: "limit-1"},
		{Reason: "invalid order message: negative total", Count: 1, First: t1, Last: t1, SampleID: "neg-1"},
		{Reason: "rejected", Count: 1, SampleID: "rejected-1"},
	}
	if diff := cmp.Diff(want, groups); diff != "" {
		t.Errorf("List groups (-want +got):\n%s", diff)
	}
}

func TestListLeavesTheQueueUnchanged(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	brokertest.Publish(t, r.cfg, r.topo.DeadLetterQueue(),
		deadLetter("a", "r1", at, `{"a":1}`), deadLetter("b", "r2", at, `{"b":2}`), deadLetter("c", "r1", at, `{"c":3}`))
	r.rejectInto(t, "d")
	r.waitDepth(t, r.topo.DeadLetterQueue(), 4)
	before := r.peekIDs(t, r.topo.DeadLetterQueue())
	r.waitDepth(t, r.topo.DeadLetterQueue(), 4)

	tool := r.tool(r.config())
	first, err := tool.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	r.waitDepth(t, r.topo.DeadLetterQueue(), 4)
	second, err := tool.List(context.Background())
	if err != nil {
		t.Fatalf("second List: %v", err)
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("a second List differs (-first +second):\n%s", diff)
	}
	r.waitDepth(t, r.topo.DeadLetterQueue(), 4)
	got := r.drain(t, r.topo.DeadLetterQueue())
	slices.Sort(before)
	if diff := cmp.Diff(before, sortedIDs(got)); diff != "" {
		t.Errorf("ids after List (-before +after):\n%s", diff)
	}
	for _, d := range got {
		if d.MessageId == "a" && (string(d.Body) != `{"a":1}` || d.Headers[consumer.HeaderReason] != "r1") {
			t.Errorf("message a changed by List: body %q headers %v", d.Body, d.Headers)
		}
	}
	if n := brokertest.Depth(t, r.ch, r.topo.Queue); n != 0 {
		t.Errorf("List put %d messages into the main queue", n)
	}
}

func TestReplayMovesOnlyWhatTheFilterChooses(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		filter    dlq.Filter
		wantMoved []string
	}{
		{"everything", dlq.Filter{}, []string{"a", "b", "c", "d", "e"}},
		{"by reason", dlq.Filter{Reasons: []string{"malformed"}}, []string{"a", "c"}},
		{"by x-death reason", dlq.Filter{Reasons: []string{"rejected"}}, []string{"e"}},
		{"by two reasons", dlq.Filter{Reasons: []string{"malformed", dlq.ReasonUnknown}}, []string{"a", "c", "d"}},
		{"by ids", dlq.Filter{IDs: []string{"b", "d", "not-there"}}, []string{"b", "d"}},
		{"reason and id", dlq.Filter{Reasons: []string{"malformed"}, IDs: []string{"c", "b"}}, []string{"c"}},
		{"max", dlq.Filter{Reasons: []string{"malformed"}, Max: 1}, []string{"a"}},
		{"nothing matches", dlq.Filter{IDs: []string{"zzz"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			brokertest.Publish(t, r.cfg, r.topo.DeadLetterQueue(),
				deadLetter("a", "invalid order message: malformed body", at, `{"a":1}`),
				deadLetter("b", "invalid order message: negative total", at, `{"b":2}`),
				deadLetter("c", "invalid order message: malformed body", at, `{"c":3}`),
				amqp.Publishing{MessageId: "d", ContentType: "text/plain", Headers: amqp.Table{"x-trace": "kept-d"}, Body: []byte("dee")})
			r.rejectInto(t, "e")
			r.waitDepth(t, r.topo.DeadLetterQueue(), 5)

			rep, err := r.tool(r.config()).Replay(context.Background(), tt.filter, false)
			if err != nil {
				t.Fatalf("Replay: %v", err)
			}
			if diff := cmp.Diff(tt.wantMoved, msgIDs(rep.Moved), emptyIsNil); diff != "" {
				t.Errorf("reported moved (-want +got):\n%s", diff)
			}
			replayed := r.drain(t, r.topo.Queue)
			if diff := cmp.Diff(tt.wantMoved, ids(replayed), emptyIsNil); diff != "" {
				t.Errorf("main queue ids (-want +got):\n%s", diff)
			}
			r.waitDepth(t, r.topo.DeadLetterQueue(), 5-len(tt.wantMoved))
			left := r.drain(t, r.topo.DeadLetterQueue())
			var wantLeft []string
			for _, id := range []string{"a", "b", "c", "d", "e"} {
				if !slices.Contains(tt.wantMoved, id) {
					wantLeft = append(wantLeft, id)
				}
			}
			if diff := cmp.Diff(wantLeft, sortedIDs(left), emptyIsNil); diff != "" {
				t.Errorf("left in the DLQ (-want +got):\n%s", diff)
			}
			for _, d := range replayed {
				checkCopy(t, d)
			}
		})
	}
}

// checkCopy checks that a replayed message kept what it carried and lost
// the dead-letter bookkeeping.
func checkCopy(t *testing.T, d amqp.Delivery) {
	t.Helper()
	wantBody := map[string]string{"a": `{"a":1}`, "b": `{"b":2}`, "c": `{"c":3}`, "d": "dee", "e": "{}"}[d.MessageId]
	if string(d.Body) != wantBody {
		t.Errorf("%s: body %q, want %q", d.MessageId, d.Body, wantBody)
	}
	wantType := "application/json"
	switch d.MessageId {
	case "d":
		wantType = "text/plain"
	case "e":
		wantType = ""
	}
	if d.ContentType != wantType {
		t.Errorf("%s: content type %q, want %q", d.MessageId, d.ContentType, wantType)
	}
	if d.DeliveryMode != amqp.Persistent {
		t.Errorf("%s: delivery mode %d, want persistent", d.MessageId, d.DeliveryMode)
	}
	if d.MessageId != "e" && d.Headers["x-trace"] != "kept-"+d.MessageId {
		t.Errorf("%s: x-trace header %v not kept", d.MessageId, d.Headers["x-trace"])
	}
	for _, h := range []string{"x-death", "x-first-death-reason", "x-first-death-queue", "x-first-death-exchange",
		consumer.HeaderReason, consumer.HeaderOriginalQueue, consumer.HeaderFailedAt} {
		if _, ok := d.Headers[h]; ok {
			t.Errorf("%s: dead-letter header %s still present", d.MessageId, h)
		}
	}
	if n := dlq.ReplayCount(d.Headers); n != 1 {
		t.Errorf("%s: %s = %d, want 1", d.MessageId, dlq.HeaderReplayCount, n)
	}
	if _, err := time.Parse(time.RFC3339Nano, d.Headers[dlq.HeaderReplayedAt].(string)); err != nil {
		t.Errorf("%s: %s: %v", d.MessageId, dlq.HeaderReplayedAt, err)
	}
}

func TestDryRunMovesNothing(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	brokertest.Publish(t, r.cfg, r.topo.DeadLetterQueue(),
		deadLetter("a", "malformed", at, `{}`), deadLetter("b", "negative", at, `{}`), deadLetter("c", "malformed", at, `{}`))
	r.waitDepth(t, r.topo.DeadLetterQueue(), 3)

	rep, err := r.tool(r.config()).Replay(context.Background(), dlq.Filter{Reasons: []string{"malformed"}}, true)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if diff := cmp.Diff([]string{"a", "c"}, msgIDs(rep.Moved)); diff != "" {
		t.Errorf("would move (-want +got):\n%s", diff)
	}
	if rep.Kept != 1 {
		t.Errorf("kept %d, want 1", rep.Kept)
	}
	r.waitDepth(t, r.topo.DeadLetterQueue(), 3)
	if n := brokertest.Depth(t, r.ch, r.topo.Queue); n != 0 {
		t.Errorf("dry run put %d messages into the main queue", n)
	}
	if got := sortedIDs(r.drain(t, r.topo.DeadLetterQueue())); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("DLQ after dry run: %v", got)
	}
}

func TestReplayTwicePublishesEachMessageOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	brokertest.Publish(t, r.cfg, r.topo.DeadLetterQueue(), deadLetter("a", "malformed", at, `{}`), deadLetter("b", "malformed", at, `{}`))
	r.exhaustInto(t, "c")
	r.waitDepth(t, r.topo.DeadLetterQueue(), 3)

	tool := r.tool(r.config())
	first, err := tool.Replay(context.Background(), dlq.Filter{}, false)
	if err != nil {
		t.Fatalf("first replay: %v", err)
	}
	if n := brokertest.Depth(t, r.ch, r.topo.DeadLetterQueue()); n != 0 {
		t.Fatalf("DLQ holds %d after the first replay, want 0", n)
	}
	second, err := tool.Replay(context.Background(), dlq.Filter{}, false)
	if err != nil {
		t.Fatalf("second replay: %v", err)
	}
	if len(first.Moved) != 3 || len(second.Moved) != 0 {
		t.Errorf("moved %d then %d, want 3 then 0", len(first.Moved), len(second.Moved))
	}
	if got := ids(r.drain(t, r.topo.Queue)); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("main queue after two replays: %v, want each message once", got)
	}
}

// A copy the broker does not confirm as queued leaves the dead letter
// where it was, and the replay stops there.
func TestFailedConfirmLeavesTheMessageInTheDLQ(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		target  func(t *testing.T, r *rig) string
		wantErr error
	}{
		{"unroutable: no such queue", func(_ *testing.T, r *rig) string { return r.topo.Queue + ".nobody-declared-this" }, broker.ErrUnroutable},
		{"nacked: queue refuses messages", func(t *testing.T, r *rig) string {
			full := r.topo.Queue + ".full"
			if _, err := r.ch.QueueDeclare(full, false, true, false, false, amqp.Table{"x-max-length": int64(0), "x-overflow": "reject-publish"}); err != nil {
				t.Fatalf("declare full queue: %v", err)
			}
			return full
		}, broker.ErrNacked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
			brokertest.Publish(t, r.cfg, r.topo.DeadLetterQueue(),
				deadLetter("a", "malformed", at, `{}`), deadLetter("b", "malformed", at, `{}`))
			r.waitDepth(t, r.topo.DeadLetterQueue(), 2)

			cfg := r.config()
			cfg.Queue = tt.target(t, r)
			rep, err := r.tool(cfg).Replay(context.Background(), dlq.Filter{}, false)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Replay = %v, want %v", err, tt.wantErr)
			}
			if len(rep.Moved) != 0 {
				t.Errorf("reported moved %v", msgIDs(rep.Moved))
			}
			r.waitDepth(t, r.topo.DeadLetterQueue(), 2)
			left := r.drain(t, r.topo.DeadLetterQueue())
			if !slices.Equal(sortedIDs(left), []string{"a", "b"}) {
				t.Fatalf("DLQ after failed replay: %v, want a and b", ids(left))
			}
			for _, d := range left {
				if d.Headers[consumer.HeaderReason] != "malformed" {
					t.Errorf("dead letter %s lost its reason: %v", d.MessageId, d.Headers)
				}
			}
		})
	}
}

func TestMissingDLQIsAnErrorAndNotDeclared(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo := brokertest.Topology(t, cfg) // never declared
	conn, err := broker.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	tool := dlq.New(conn, dlq.Config{DeadLetterQueue: topo.DeadLetterQueue(), Queue: topo.Queue})
	if _, err := tool.List(context.Background()); !errors.Is(err, dlq.ErrNoQueue) {
		t.Errorf("List = %v, want ErrNoQueue", err)
	}
	if _, err := tool.Replay(context.Background(), dlq.Filter{}, false); !errors.Is(err, dlq.ErrNoQueue) {
		t.Errorf("Replay = %v, want ErrNoQueue", err)
	}
	ch := brokertest.Channel(t, cfg)
	if _, err := ch.QueueDeclarePassive(topo.DeadLetterQueue(), true, false, false, false, nil); err == nil {
		t.Error("the tool declared the missing DLQ")
	}
}
