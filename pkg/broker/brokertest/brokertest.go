// Package brokertest connects tests to the RabbitMQ described in .env (the
// test user TEST_RABBITMQ_USER on the application vhost, which may only use
// queues named test.*) and gives each test its own queue names, deleted
// when the test ends.
package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/broker"
	"moviestream/pkg/testenv"
)

// Config returns the broker config from .env, after checking the broker
// answers (skip locally, fail in CI).
func Config(tb testing.TB) broker.Config {
	tb.Helper()
	testenv.Load(tb)
	cfg := broker.Config{
		Addrs:    strings.Split(testenv.Get(tb, "RABBITMQ_ADDRS"), ","),
		VHost:    testenv.Get(tb, "RABBITMQ_VHOST"),
		User:     testenv.Get(tb, "TEST_RABBITMQ_USER"),
		Password: testenv.Get(tb, "TEST_RABBITMQ_PASSWORD"),
		Name:     "test:" + tb.Name(),
	}
	conn, err := broker.Dial(cfg)
	if err != nil {
		testenv.Unavailable(tb, "RabbitMQ "+cfg.String(), err)
	}
	_ = conn.Close()
	return cfg
}

// Channel opens a connection and channel for the test's own inspection.
func Channel(tb testing.TB, cfg broker.Config) *amqp.Channel {
	tb.Helper()
	conn, err := broker.Dial(cfg)
	if err != nil {
		tb.Fatalf("dial %s: %v", cfg, err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		tb.Fatalf("channel: %v", err)
	}
	return ch
}

var unsafe = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// Topology returns a topology with a queue name unique to this test; the
// queue and its DLQ are deleted in Cleanup.
func Topology(tb testing.TB, cfg broker.Config) broker.Topology {
	tb.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := strings.ToLower(unsafe.ReplaceAllString(tb.Name(), "_"))
	if len(name) > 60 {
		name = name[:60]
	}
	topo := broker.Topology{Queue: "test." + name + "." + hex.EncodeToString(b)}
	tb.Cleanup(func() {
		conn, err := broker.Dial(cfg)
		if err != nil {
			tb.Errorf("cleanup dial: %v", err)
			return
		}
		defer conn.Close()
		for _, q := range []string{topo.Queue, topo.DeadLetterQueue()} {
			ch, err := conn.Channel()
			if err != nil {
				tb.Errorf("cleanup channel: %v", err)
				return
			}
			_, _ = ch.QueueDelete(q, false, false, false)
			_ = ch.Close()
		}
	})
	return topo
}

// Depth returns the number of ready messages in queue.
func Depth(tb testing.TB, ch *amqp.Channel, queue string) int {
	tb.Helper()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		tb.Fatalf("inspect %s: %v", queue, err)
	}
	return q.Messages
}

// Get fetches one message from queue within timeout, acking it.
func Get(tb testing.TB, ch *amqp.Channel, queue string, timeout time.Duration) amqp.Delivery {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			tb.Fatalf("get from %s: %v", queue, err)
		}
		if ok {
			return d
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no message in %s within %s", queue, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Publish sends msgs to queue through the default exchange and waits until
// the broker confirms all of them.
func Publish(tb testing.TB, cfg broker.Config, queue string, msgs ...amqp.Publishing) {
	tb.Helper()
	ch := Channel(tb, cfg)
	if err := ch.Confirm(false); err != nil {
		tb.Fatalf("confirm mode: %v", err)
	}
	confirms := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	for _, m := range msgs {
		dc, err := ch.PublishWithDeferredConfirm("", queue, false, false, m)
		if err != nil {
			tb.Fatalf("publish: %v", err)
		}
		confirms = append(confirms, dc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, dc := range confirms {
		if ok, err := dc.WaitContext(ctx); err != nil || !ok {
			tb.Fatalf("publish not confirmed: acked=%v err=%v", ok, err)
		}
	}
}

// RunPublisher runs a publisher on topo until the test ends, without waiting
// for it to connect.
func RunPublisher(tb testing.TB, cfg broker.Config, topo broker.Topology) *broker.Publisher {
	tb.Helper()
	p := broker.NewPublisher(cfg, topo, 4, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	return p
}

// StartPublisher is RunPublisher, returning once the publisher is connected.
func StartPublisher(tb testing.TB, cfg broker.Config, topo broker.Topology) *broker.Publisher {
	tb.Helper()
	p := RunPublisher(tb, cfg, topo)
	testenv.WaitFor(tb, 10*time.Second, "publisher connected", func() bool { return p.Status().Connected })
	return p
}

// Declared returns a topology of the test's own, declared on the broker as
// the services declare it, and a channel for the test to inspect it with.
func Declared(tb testing.TB, cfg broker.Config) (broker.Topology, *amqp.Channel) {
	tb.Helper()
	topo := Topology(tb, cfg)
	ch := Channel(tb, cfg)
	if err := topo.Declare(ch); err != nil {
		tb.Fatalf("declare %s: %v", topo.Queue, err)
	}
	return topo, ch
}

// SetPolicy applies a policy of definition (JSON) to queue alone, through
// the management API as RABBITMQ_ADMIN_USER, until ClearPolicy or the
// test's end: how a test makes a queue behave in a way its declaration
// cannot (the test user declares, it does not administer).
func SetPolicy(tb testing.TB, queue, definition string) {
	tb.Helper()
	body := fmt.Sprintf(`{"pattern":%q,"definition":%s,"apply-to":"queues","priority":100}`,
		"^"+regexp.QuoteMeta(queue)+"$", definition)
	managementAPI(tb, http.MethodPut, "policies", queue, body)
	tb.Cleanup(func() { ClearPolicy(tb, queue) })
}

// ClearPolicy removes the policy SetPolicy gave queue; removing it twice
// is harmless.
func ClearPolicy(tb testing.TB, queue string) {
	tb.Helper()
	managementAPI(tb, http.MethodDelete, "policies", queue, "")
}

// managementAPI sends one request about name in the test vhost to the
// management API of the first node of RABBITMQ_ADDRS.
func managementAPI(tb testing.TB, method, kind, name, body string) {
	tb.Helper()
	testenv.Load(tb)
	host, _, err := net.SplitHostPort(strings.Split(testenv.Get(tb, "RABBITMQ_ADDRS"), ",")[0])
	if err != nil {
		tb.Fatalf("RABBITMQ_ADDRS: %v", err)
	}
	u := fmt.Sprintf("http://%s/api/%s/%s/%s", net.JoinHostPort(host, testenv.Get(tb, "RABBITMQ_MANAGEMENT_PORT")),
		kind, url.PathEscape(testenv.Get(tb, "RABBITMQ_VHOST")), url.PathEscape(name))
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(testenv.Get(tb, "RABBITMQ_ADMIN_USER"), testenv.Get(tb, "RABBITMQ_ADMIN_PASSWORD"))
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("management API %s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && !(method == http.MethodDelete && resp.StatusCode == http.StatusNotFound) {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		tb.Fatalf("management API %s %s: %d %s", method, u, resp.StatusCode, msg)
	}
}
