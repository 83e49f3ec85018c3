package broker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/broker"
	"moviestream/pkg/broker/brokertest"
	"moviestream/pkg/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestPublishConfirmedAndPersistent(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo := brokertest.Topology(t, cfg)
	p := brokertest.StartPublisher(t, cfg, topo)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body := []byte(`{"user_id":"3","number_of_items":"5","total_amount":"180"}`)
	if err := p.Publish(ctx, amqp.Publishing{MessageId: "m-1", ContentType: "application/json", Body: body}); err != nil {
		t.Fatalf("Publish: %v", err)
	}

	ch := brokertest.Channel(t, cfg)
	d := brokertest.Get(t, ch, topo.Queue, 5*time.Second)
	if string(d.Body) != string(body) || d.MessageId != "m-1" || d.ContentType != "application/json" {
		t.Errorf("got body %q id %q type %q", d.Body, d.MessageId, d.ContentType)
	}
	if d.DeliveryMode != amqp.Persistent {
		t.Errorf("delivery mode = %d, want persistent", d.DeliveryMode)
	}
}

func TestTopologyDeclaresQuorumQueueWithDeadLetters(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo := brokertest.Topology(t, cfg)
	brokertest.StartPublisher(t, cfg, topo)

	ch := brokertest.Channel(t, cfg)
	// A passive declare with the same arguments succeeds only if the queues
	// exist; a second active declare with identical arguments must be a no-op.
	if err := topo.Declare(ch); err != nil {
		t.Fatalf("redeclare with identical arguments: %v", err)
	}
	if _, err := ch.QueueDeclarePassive(topo.DeadLetterQueue(), true, false, false, false, nil); err != nil {
		t.Fatalf("DLQ missing: %v", err)
	}
}

func TestTopologyMismatchIsReported(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo := brokertest.Topology(t, cfg)
	ch := brokertest.Channel(t, cfg)
	// An older deployment's plain classic queue under the same name.
	if _, err := ch.QueueDeclare(topo.Queue, true, false, false, false, nil); err != nil {
		t.Fatalf("declare classic queue: %v", err)
	}
	ch2 := brokertest.Channel(t, cfg)
	err := topo.Declare(ch2)
	if !errors.Is(err, broker.ErrTopologyMismatch) {
		t.Fatalf("Declare over a classic queue = %v, want ErrTopologyMismatch", err)
	}

	// The publisher stays unready and says why.
	p := brokertest.RunPublisher(t, cfg, topo)
	testenv.WaitFor(t, 10*time.Second, "mismatch in status", func() bool {
		s := p.Status()
		return !s.Connected && strings.Contains(s.Error, broker.ErrTopologyMismatch.Error())
	})
	perr := p.Publish(context.Background(), amqp.Publishing{Body: []byte("{}")})
	if !errors.Is(perr, broker.ErrUnavailable) {
		t.Errorf("Publish while mismatched = %v, want ErrUnavailable", perr)
	}
}

func TestPublishNackedIsAnError(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo := brokertest.Topology(t, cfg)
	cc := confirmChannel(t, cfg)

	// A queue that refuses every message makes the broker nack the publish.
	ch := brokertest.Channel(t, cfg)
	full := topo.Queue + ".full"
	if _, err := ch.QueueDeclare(full, false, true, false, false, amqp.Table{"x-max-length": int64(0), "x-overflow": "reject-publish"}); err != nil {
		t.Fatalf("declare full queue: %v", err)
	}
	t.Cleanup(func() { _, _ = ch.QueueDelete(full, false, false, false) })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := cc.Publish(ctx, "", full, amqp.Publishing{MessageId: "x", Body: []byte("{}")})
	if !errors.Is(err, broker.ErrNacked) || !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Publish to a rejecting queue = %v, want ErrNacked", err)
	}
}

func TestPublishUnroutableIsAnError(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo, _ := brokertest.Declared(t, cfg)
	cc := confirmChannel(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := cc.Publish(ctx, "", topo.Queue+".nobody-declared-this", amqp.Publishing{MessageId: "lost", Body: []byte("{}")})
	if !errors.Is(err, broker.ErrUnroutable) {
		t.Fatalf("Publish to a missing queue = %v, want ErrUnroutable", err)
	}
	// The channel stays usable for the next publish.
	if err := cc.Publish(ctx, "", topo.Queue, amqp.Publishing{MessageId: "ok", Body: []byte("{}")}); err != nil {
		t.Fatalf("Publish after a return: %v", err)
	}
}

func TestPublishWithoutBrokerFailsFast(t *testing.T) {
	t.Parallel()
	port := strconv.Itoa(testenv.FreePort(t)) // nothing listens here
	cfg := broker.Config{Addrs: []string{"127.0.0.1:" + port}, VHost: "/", User: "u", Password: "p"}
	p := broker.NewPublisher(cfg, broker.Topology{Queue: "q"}, 1, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer pcancel()
	err := p.Publish(pctx, amqp.Publishing{Body: []byte("{}")})
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Publish without broker = %v, want ErrUnavailable", err)
	}
	if pctx.Err() != nil {
		t.Fatal("Publish waited for its deadline instead of failing fast")
	}
	if p.Status().Connected {
		t.Error("Status says connected without a broker")
	}
}

func TestConfigURLEscapesAndStringHidesPassword(t *testing.T) {
	t.Parallel()
	cfg := broker.Config{Addrs: []string{"h:5672", "[::1]:5673"}, VHost: "/", User: "u@x", Password: "p:/@?#"}
	u, err := amqp.ParseURI(cfg.URL(cfg.Addrs[1]))
	if err != nil {
		t.Fatalf("ParseURI(%q): %v", cfg.URL(cfg.Addrs[1]), err)
	}
	if u.Username != "u@x" || u.Password != "p:/@?#" || u.Vhost != "/" || u.Host != "::1" || u.Port != 5673 {
		t.Errorf("round trip: user %q password %q vhost %q", u.Username, u.Password, u.Vhost)
	}
	if s := cfg.String(); s == "" || strings.Contains(s, cfg.Password) {
		t.Errorf("String() = %q leaks the password", s)
	}
}

// The delivery limit, as documented: a message taken back from consumers
// more than DeliveryLimit times goes to the DLQ (x-death reason
// delivery_limit) instead of being handed out again.
func TestDeliveryLimitDeadLetters(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo, ch := brokertest.Declared(t, cfg)
	brokertest.Publish(t, cfg, topo.Queue, amqp.Publishing{MessageId: "keeps-failing", Body: []byte("{}")})

	deliveries, dead := 0, false
	for !dead && deliveries <= broker.DeliveryLimit+1 {
		// Wait for the requeued message to come back, or for the DLQ.
		var d amqp.Delivery
		testenv.WaitFor(t, 10*time.Second, "the message back or dead-lettered", func() bool {
			var ok bool
			var err error
			if d, ok, err = ch.Get(topo.Queue, false); err != nil {
				t.Fatalf("get: %v", err)
			}
			if ok {
				return true
			}
			dead = brokertest.Depth(t, ch, topo.DeadLetterQueue()) == 1
			return dead
		})
		if dead {
			break
		}
		deliveries++
		if err := d.Nack(false, true); err != nil {
			t.Fatalf("nack: %v", err)
		}
	}
	if deliveries != broker.DeliveryLimit+1 {
		t.Errorf("delivered %d times, want %d: the return after the %dth redelivery dead-letters it", deliveries, broker.DeliveryLimit+1, broker.DeliveryLimit)
	}
	d := brokertest.Get(t, ch, topo.DeadLetterQueue(), 5*time.Second)
	deaths, _ := d.Headers["x-death"].([]any)
	if d.MessageId != "keeps-failing" || len(deaths) == 0 {
		t.Fatalf("dead letter %q, x-death %v", d.MessageId, d.Headers["x-death"])
	}
	if death, _ := deaths[0].(amqp.Table); death["reason"] != "delivery_limit" {
		t.Errorf("x-death reason %v, want delivery_limit", death["reason"])
	}
}

// confirmChannel opens a confirm-mode channel on a connection of its own,
// for publishing to queues other than a publisher's topology.
func confirmChannel(t *testing.T, cfg broker.Config) *broker.ConfirmChannel {
	t.Helper()
	conn, err := broker.Dial(cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cc, err := broker.NewConfirmChannel(conn)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// TestReturnedMessagesComeFirst pins the broker behaviour billing's crash
// recovery relies on: messages a consumer held when its channel closed are
// handed out again before messages published after them, and marked
// redelivered. If a RabbitMQ upgrade changes this, billing's one-at-a-time
// recovery no longer isolates a message that crashes it.
func TestReturnedMessagesComeFirst(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo, _ := brokertest.Declared(t, cfg)
	brokertest.Publish(t, cfg, topo.Queue,
		amqp.Publishing{MessageId: "held-1", Body: []byte("{}")},
		amqp.Publishing{MessageId: "held-2", Body: []byte("{}")})

	// A consumer takes both and dies without settling them.
	crashed := brokertest.Channel(t, cfg)
	if err := crashed.Qos(2, 0, false); err != nil {
		t.Fatal(err)
	}
	deliveries, err := crashed.Consume(topo.Queue, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case <-deliveries:
		case <-time.After(5 * time.Second):
			t.Fatal("the consumer got fewer than 2 messages")
		}
	}
	brokertest.Publish(t, cfg, topo.Queue, amqp.Publishing{MessageId: "fresh", Body: []byte("{}")})
	if err := crashed.Close(); err != nil {
		t.Fatal(err)
	}

	ch := brokertest.Channel(t, cfg)
	var got []string
	for range 3 {
		d := brokertest.Get(t, ch, topo.Queue, 5*time.Second)
		got = append(got, fmt.Sprintf("%s redelivered=%t", d.MessageId, d.Redelivered))
	}
	want := []string{"held-1 redelivered=true", "held-2 redelivered=true", "fresh redelivered=false"}
	if !slices.Equal(got, want) {
		t.Errorf("order after a consumer died = %q, want %q", got, want)
	}
}

func TestTopologyQuorumSizeIsPartOfTheDeclaration(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo := brokertest.Topology(t, cfg)
	topo.QuorumSize = 1 // the one node there is
	if err := topo.Declare(brokertest.Channel(t, cfg)); err != nil {
		t.Fatalf("declare with a quorum size: %v", err)
	}
	if got := topo.QueueArgs()["x-quorum-initial-group-size"]; got != int64(1) {
		t.Errorf("x-quorum-initial-group-size = %v, want 1", got)
	}

	// A client whose .env says otherwise is told which setting differs.
	other := topo
	other.QuorumSize = 0
	err := other.Declare(brokertest.Channel(t, cfg))
	if !errors.Is(err, broker.ErrTopologyMismatch) || !strings.Contains(err.Error(), "RABBITMQ_QUORUM_SIZE") {
		t.Fatalf("declare without the size over a sized queue = %v, want ErrTopologyMismatch naming RABBITMQ_QUORUM_SIZE", err)
	}
}

func TestDialSkipsNodesThatAreDown(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	down := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cfg.Addrs = append([]string{down}, cfg.Addrs...)
	conn, err := broker.Dial(cfg)
	if err != nil {
		t.Fatalf("Dial with the first node down: %v", err)
	}
	_ = conn.Close()

	alsoDown := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cfg.Addrs = []string{down, alsoDown}
	_, err = broker.Dial(cfg)
	if err == nil || !strings.Contains(err.Error(), down) || !strings.Contains(err.Error(), alsoDown) {
		t.Fatalf("Dial with every node down = %v, want an error naming each node", err)
	}
}

// Two relays stand for two cluster members in front of the one test broker:
// when the member a publisher uses dies, its next publish succeeds through
// the other within seconds, without a restart.
func TestPublisherMovesToAnotherNodeWhenItsNodeDies(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo := brokertest.Topology(t, cfg)
	first, second := newRelay(t, cfg.Addrs[0]), newRelay(t, cfg.Addrs[0])
	nodes := cfg
	nodes.Addrs = []string{first.addr(), second.addr()}
	p := brokertest.StartPublisher(t, nodes, topo)

	publish := func(id string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return p.Publish(ctx, amqp.Publishing{MessageId: id, Body: []byte("{}")})
	}
	if err := publish("before"); err != nil {
		t.Fatalf("Publish through the first node: %v", err)
	}
	if first.connections() == 0 || second.connections() != 0 {
		t.Fatalf("connections: first %d, second %d; want the first node only", first.connections(), second.connections())
	}

	died := time.Now()
	first.kill()
	var n int
	testenv.WaitFor(t, 10*time.Second, "a publish through the other node", func() bool {
		n++
		return publish(fmt.Sprint("after-", n)) == nil
	})
	t.Logf("publishing again %v after its node died", time.Since(died).Round(time.Millisecond))
	if second.connections() == 0 {
		t.Error("no connection reached the second node")
	}
}

// relay forwards TCP connections to target until kill, which also cuts the
// connections it carries, as a node's death does.
type relay struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	count int
}

func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln}
	t.Cleanup(r.kill)
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, in, out)
			r.count++
			r.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
			go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
		}
	}()
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

func (r *relay) kill() {
	_ = r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		_ = c.Close()
	}
	r.conns = nil
}
