//go:build fault

package fault

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"moviestream/pkg/testenv"
)

// TestGracefulStopBilling: SIGINT to billing while it holds a batch exits 0
// and acks only what it committed; whatever it did not commit stays in the
// queue and becomes an order after the next start.
func TestGracefulStopBilling(t *testing.T) {
	s := newReadyStack(t)
	post := func(prefix string, n int) []string {
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("%s-%d", prefix, i)
			body, _, _, _ := orderBody(i)
			if r := s.postOrder(keys[i], body); r.status != http.StatusOK {
				t.Fatalf("POST %s: %s", keys[i], r)
			}
		}
		return keys
	}

	t.Run("commit under way", func(t *testing.T) {
		// Billing's INSERT waits for a table lock: a batch is being written
		// when the signal arrives.
		release := s.lockOrders(t)
		keys := post("commit", 50)
		testenv.WaitFor(t, 15*time.Second, "billing's write waiting for the lock", func() bool {
			return s.billingBackends(t, true) >= 1
		})
		testenv.WaitFor(t, 15*time.Second, "all orders delivered to billing", func() bool {
			main, _ := s.ready(t)
			return main == 0
		})
		s.billing.Signal(t, syscall.SIGINT)
		// The health server closes first: the signal has been handled.
		testenv.WaitFor(t, 10*time.Second, "billing /health closed", func() bool { return get(s.billingURL("/health")).err != nil })
		release()
		code := s.billing.Wait(t, 30*time.Second)
		if code != 0 {
			t.Errorf("billing exit code %d, want 0", code)
		}
		committed := s.countOrders(t, "message_id IN ?", keys)
		main, dead := s.ready(t)
		if int(committed)+main != len(keys) || dead != 0 {
			t.Errorf("after the stop: %d committed + %d back in the queue, %d dead-lettered; want %d in all, none dead",
				committed, main, dead, len(keys))
		}
		s.billing.Start(t)
		s.requireOrders(t, 15*time.Second, keys...)
		t.Logf("SIGINT during a commit: exit %d; %d of %d orders committed and acked before the exit, %d left unacked in the queue, written after the restart",
			code, committed, len(keys), main)
	})

	t.Run("database down", func(t *testing.T) {
		waitStatus(t, 15*time.Second, s.billingURL("/ready"), http.StatusOK)
		s.pg.Stop(t, "fast")
		keys := post("dbdown", 50)
		testenv.WaitFor(t, 15*time.Second, "all orders delivered to billing", func() bool {
			main, _ := s.ready(t)
			return main == 0
		})
		code, took := s.billing.Stop(t, syscall.SIGINT, 30*time.Second)
		if code != 0 {
			t.Errorf("billing exit code %d, want 0", code)
		}
		if main, dead := s.ready(t); main != len(keys) || dead != 0 {
			t.Errorf("after the stop: %d in the queue, %d in the DLQ; want all %d back in the queue, none dead", main, dead, len(keys))
		}
		s.pg.Start(t)
		if n := s.countOrders(t, "message_id IN ?", keys); n != 0 {
			t.Errorf("%d orders written while the database was down?", n)
		}
		s.billing.Start(t)
		s.requireOrders(t, 15*time.Second, keys...)
		t.Logf("SIGINT with the database down: exit %d after %s, all %d messages back in the queue unacked, written after the restart",
			code, took.Round(time.Millisecond), len(keys))
	})

	if code, _ := s.billing.Stop(t, syscall.SIGINT, 30*time.Second); code != 0 {
		t.Errorf("billing exit code %d, want 0", code)
	}
	if main, dead := s.ready(t); main != 0 || dead != 0 {
		t.Errorf("queues not empty at the end: %d, DLQ %d", main, dead)
	}
}

// TestGracefulStopGateway: SIGINT to the gateway while publishes are in
// flight lets them finish with 200, and each of those orders is in the
// queue; the gateway exits 0.
func TestGracefulStopGateway(t *testing.T) {
	s := newStack(t)
	s.startGateway() // no billing: the queue keeps what is published
	waitStatus(t, 30*time.Second, s.gatewayURL("/ready"), http.StatusOK)

	t.Run("publishes waiting for confirms", func(t *testing.T) {
		// A frozen broker holds every publish at "waiting for the confirm".
		thaw := s.freezeBroker(t)
		const n = 8
		var wrote atomic.Int64
		replies := make([]reply, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				body, _, _, _ := orderBody(i)
				trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Add(1) }}
				ctx := httptrace.WithClientTrace(context.Background(), trace)
				replies[i] = doCtx(ctx, http.MethodPost, s.gatewayURL("/api/billing"), jsonType, body,
					"Idempotency-Key", fmt.Sprintf("inflight-%d", i))
			})
		}
		testenv.WaitFor(t, 5*time.Second, "requests sent", func() bool { return wrote.Load() == n })
		s.gateway.Signal(t, syscall.SIGINT)
		testenv.WaitFor(t, 5*time.Second, "gateway listener closed", func() bool { return get(s.gatewayURL("/health")).err != nil })
		thaw() // within GATEWAY_PUBLISH_TIMEOUT of the publishes
		wg.Wait()
		code := s.gateway.Wait(t, 30*time.Second)
		for i, r := range replies {
			if r.status != http.StatusOK {
				t.Errorf("in-flight order %d: %s, want 200", i, r)
			}
		}
		if code != 0 {
			t.Errorf("gateway exit code %d, want 0", code)
		}
		main, _ := s.ready(t)
		if main != n {
			t.Errorf("queue holds %d messages, want the %d in-flight orders", main, n)
		}
		t.Logf("SIGINT with %d publishes waiting for confirms: all answered 200, all %d in the queue, gateway exit %d", n, main, code)
	})

	t.Run("under load", func(t *testing.T) {
		s.gateway.Start(t)
		waitStatus(t, 15*time.Second, s.gatewayURL("/ready"), http.StatusOK)
		before, _ := s.ready(t)
		var (
			mu       sync.Mutex
			ok       []string
			failed   int
			bad      []string
			stop     atomic.Bool
			inFlight atomic.Int64 // answered 200 though sent before the signal and answered after it
			signaled atomic.Int64 // unix nanos of the signal
			nOK      atomic.Int64
			wg       sync.WaitGroup
		)
		for w := range 6 {
			wg.Go(func() {
				for i := 0; !stop.Load(); i++ {
					k := fmt.Sprintf("load-w%d-%d", w, i)
					body, _, _, _ := orderBody(i)
					sent := time.Now().UnixNano()
					r := s.postOrder(k, body)
					mu.Lock()
					switch {
					case r.status == http.StatusOK:
						ok = append(ok, k)
						nOK.Add(1)
						if sig := signaled.Load(); sig != 0 && sent < sig {
							inFlight.Add(1)
						}
					case r.err != nil: // the listener is closed: the order was not taken
						failed++
					default:
						bad = append(bad, r.String())
					}
					mu.Unlock()
					if r.err != nil {
						pause(20 * time.Millisecond)
					}
				}
			})
		}
		testenv.WaitFor(t, 10*time.Second, "orders flowing", func() bool { return nOK.Load() >= 100 })
		signaled.Store(time.Now().UnixNano())
		code, took := s.gateway.Stop(t, syscall.SIGINT, 30*time.Second)
		stop.Store(true)
		wg.Wait()
		if code != 0 {
			t.Errorf("gateway exit code %d, want 0", code)
		}
		if len(bad) > 0 {
			t.Errorf("%d answers neither 200 nor a refused connection, e.g. %s", len(bad), bad[0])
		}
		after, _ := s.ready(t)
		if got := after - before; got != len(ok) {
			t.Errorf("queue gained %d messages, but %d orders were answered 200", got, len(ok))
		}
		t.Logf("SIGINT under load: exit %d in %s; %d orders answered 200 (%d of them in flight at the signal), all in the queue; %d attempts refused after the listener closed",
			code, took.Round(time.Millisecond), len(ok), inFlight.Load(), failed)
	})
}
