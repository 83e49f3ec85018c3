//go:build fault

package fault

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"moviestream/e2e/testinfra"
	"moviestream/pkg/backoff"
	"moviestream/pkg/testenv"
)

// Size of the fault-injection run; FAULT_ORDERS overrides the number of
// orders (at least 2,000 in `make test`).
const (
	defaultOrders = 2400
	clients       = 8                     // concurrent HTTP clients
	rate          = 80                    // orders started per second, at most
	keyBudget     = 90 * time.Second      // one key's retries, at most
	runBudget     = 4 * time.Minute       // the whole load, at most
	retryMin      = 50 * time.Millisecond // a client's pause after a 503 or a refused connection
	retryMax      = 500 * time.Millisecond
)

// loadStats are what the clients saw.
type loadStats struct {
	ok, unavailable, connErrors, other atomic.Int64
	worst503                           atomic.Int64 // nanoseconds
	worst200                           atomic.Int64
}

func maxInto(a *atomic.Int64, d time.Duration) {
	for {
		cur := a.Load()
		if int64(d) <= cur || a.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// TestFaultInjection sends thousands of orders with distinct
// Idempotency-Keys through the gateway, each client retrying its own key
// on 503 or a refused connection until it gets 200, while in turn billing
// is stopped and started, billing is killed mid-batch, RabbitMQ is
// restarted, PostgreSQL is restarted, and the gateway is restarted. Then
// every key answered 200 must be exactly one row, with the values sent.
func TestFaultInjection(t *testing.T) {
	total := defaultOrders
	if v := os.Getenv("FAULT_ORDERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 {
			t.Fatalf("FAULT_ORDERS=%q: want a number >= 100", v)
		}
		total = n
	}
	s := newReadyStack(t)

	run := fmt.Sprintf("fi%d", time.Now().UnixNano()%1_000_000)
	keys := make([]string, total)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%05d", run, i)
	}
	accepted := make([]bool, total) // written by the one client owning key i
	attempts := make([]int, total)
	var stats loadStats

	ctx, cancel := context.WithTimeout(context.Background(), runBudget)
	defer cancel()
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := range jobs {
				accepted[i], attempts[i] = s.submit(ctx, keys[i], i, &stats)
			}
		})
	}
	start := time.Now()
	go func() {
		defer close(jobs)
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for i := range total {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()

	// The faults, one after another, each once a further share of the
	// orders has been accepted, so that orders flow before, during and
	// after each of them.
	faults := []struct {
		name string
		run  func(t *testing.T, stats *loadStats) string
	}{
		{"billing SIGINT, then start", s.faultBillingStop},
		{"billing SIGKILL mid-batch, then start", s.faultBillingKill},
		{"RabbitMQ restart", s.faultBrokerRestart},
		{"PostgreSQL restart (immediate)", s.faultPostgresRestart},
		{"gateway SIGINT, then start", s.faultGatewayRestart},
	}
	report := []string{}
	for k, f := range faults {
		threshold := int64((k + 1) * total / (len(faults) + 2))
		testenv.WaitFor(t, 90*time.Second, fmt.Sprintf("%d orders accepted before %q", threshold, f.name),
			func() bool { return stats.ok.Load() >= threshold })
		began := time.Now()
		detail := f.run(t, &stats)
		report = append(report, fmt.Sprintf("  %-40s at %5d accepted, took %6s: %s",
			f.name, threshold, time.Since(began).Round(time.Millisecond), detail))
	}
	wg.Wait()
	loadTook := time.Since(start)
	if ctx.Err() != nil {
		t.Errorf("the load did not finish within %s", runBudget)
	}

	var sent []string
	unconfirmed := 0
	for i, ok := range accepted {
		if ok {
			sent = append(sent, keys[i])
		} else {
			unconfirmed++
		}
	}
	drained := testenv.WaitFor(t, 90*time.Second, "every accepted order written", func() bool {
		return s.tryCountOrders() >= int64(len(sent))
	})
	// Stopped, billing hands back whatever it has not acked; then the
	// queues must be empty.
	if code, _ := s.billing.Stop(t, syscall.SIGINT, 30*time.Second); code != 0 {
		t.Errorf("billing exit code %d after SIGINT, want 0", code)
	}
	mainDepth, deadDepth := s.ready(t)

	// Compare the table with what was sent.
	rows := s.allOrders(t)
	perKey := map[string]int{}
	unexpected, mismatched := 0, 0
	index := make(map[string]int, total)
	for i, k := range keys {
		index[k] = i
	}
	for _, r := range rows {
		if r.MessageID == nil {
			unexpected++
			continue
		}
		i, known := index[*r.MessageID]
		if !known {
			unexpected++
			continue
		}
		perKey[*r.MessageID]++
		_, user, items, amount := orderBody(i)
		if r.UserID != user || r.NumberOfItems != items || r.TotalAmount != amount {
			mismatched++
		}
	}
	lost, duplicated, extra := 0, 0, 0
	for i, k := range keys {
		n := perKey[k]
		if n > 1 {
			duplicated += n - 1
		}
		if accepted[i] && n == 0 {
			lost++
		}
		if !accepted[i] && n > 0 {
			extra++ // never answered 200, yet stored: allowed, counted
		}
	}
	totalAttempts := 0
	for _, a := range attempts {
		totalAttempts += a
	}

	summary := fmt.Sprintf(`fault injection summary
  orders sent            %d distinct Idempotency-Keys by %d clients (%d attempts in all; %d answered 503, %d refused connections, %d other answers)
  accepted (200)         %d    not accepted within the retry budget: %d
  load took              %s; slowest 200: %s, slowest 503: %s
  faults, in turn:
%s
  all accepted orders written %s after the load ended
  rows in orders         %d
  lost                   %d   (answered 200, no row)
  duplicated             %d   (more than one row for a key)
  unexpected             %d   (rows whose key was never sent)
  wrong values           %d   (row differs from the order sent)
  stored without a 200   %d   (allowed: the client gave up first)
  billing_queue          %d messages left
  billing_queue.dlq      %d messages`,
		total, clients, totalAttempts, stats.unavailable.Load(), stats.connErrors.Load(), stats.other.Load(),
		len(sent), unconfirmed,
		loadTook.Round(time.Millisecond), time.Duration(stats.worst200.Load()).Round(time.Millisecond), time.Duration(stats.worst503.Load()).Round(time.Millisecond),
		strings.Join(report, "\n"),
		drained.Round(time.Millisecond),
		len(rows), lost, duplicated, unexpected, mismatched, extra, mainDepth, deadDepth)
	t.Log(summary)
	fmt.Println(summary)

	if total < 2000 && testenv.InCI() {
		t.Errorf("%d orders: make test runs at least 2000", total)
	}
	if lost != 0 || duplicated != 0 || unexpected != 0 || mismatched != 0 {
		t.Errorf("lost=%d duplicated=%d unexpected=%d wrong values=%d, want all 0", lost, duplicated, unexpected, mismatched)
	}
	if unconfirmed != 0 {
		t.Errorf("%d orders never got 200 within %s of retries", unconfirmed, keyBudget)
	}
	if stats.other.Load() != 0 {
		t.Errorf("%d answers were neither 200, 503 nor a refused connection", stats.other.Load())
	}
	if mainDepth != 0 || deadDepth != 0 {
		t.Errorf("%s holds %d, %s holds %d; want both empty", queue, mainDepth, dlq, deadDepth)
	}
}

// submit posts order i under key until it is accepted, retrying on 503 and
// on connection errors with capped backoff, at most keyBudget. It returns
// whether the order got 200, and after how many attempts.
func (s *stack) submit(ctx context.Context, key string, i int, stats *loadStats) (bool, int) {
	body, _, _, _ := orderBody(i)
	bo := backoff.New(retryMin, retryMax)
	deadline := time.Now().Add(keyBudget)
	for attempt := 1; ; attempt++ {
		r := s.postOrder(key, body)
		switch {
		case r.status == http.StatusOK:
			stats.ok.Add(1)
			maxInto(&stats.worst200, r.took)
			return true, attempt
		case r.status == http.StatusServiceUnavailable:
			stats.unavailable.Add(1)
			maxInto(&stats.worst503, r.took)
		case r.err != nil:
			stats.connErrors.Add(1)
		default:
			stats.other.Add(1)
			return false, attempt // a client error: retrying cannot help
		}
		if time.Now().After(deadline) || bo.Sleep(ctx) != nil {
			return false, attempt
		}
	}
}

// faultBillingStop: SIGINT, which PM2 sends on stop; billing must exit 0.
func (s *stack) faultBillingStop(t *testing.T, _ *loadStats) string {
	return gracefulRestart(t, s.billing, s.billingURL("/ready"))
}

// gracefulRestart sends p SIGINT, wants exit code 0, starts it again and
// waits until readyURL answers 200.
func gracefulRestart(t *testing.T, p *testinfra.Proc, readyURL string) string {
	t.Helper()
	code, took := p.Stop(t, syscall.SIGINT, 35*time.Second)
	if code != 0 {
		t.Errorf("%s exit code %d after SIGINT, want 0", p.Name, code)
	}
	p.Start(t)
	ready := waitStatus(t, 30*time.Second, readyURL, http.StatusOK)
	return fmt.Sprintf("exit %d after %s, ready again %s after start", code, took.Round(time.Millisecond), ready.Round(time.Millisecond))
}

// faultBillingKill kills billing while a batch is being written: its INSERT
// waits for a table lock the test holds, and the orders accepted meanwhile
// are delivered to billing and held unacked. All of those come back to the
// queue. The orphaned INSERT commits once the lock is released, but no ack
// follows: RabbitMQ redelivers those messages too, and the next billing's
// insert must skip them.
func (s *stack) faultBillingKill(t *testing.T, stats *loadStats) string {
	release := s.lockOrders(t)
	testenv.WaitFor(t, 30*time.Second, "billing's write waiting for the lock", func() bool {
		return s.billingBackends(t, true) >= 1
	})
	locked := stats.ok.Load()
	testenv.WaitFor(t, 30*time.Second, "billing holding 200 more orders", func() bool {
		main, _ := s.ready(t)
		return stats.ok.Load()-locked >= 200 && main == 0
	})
	held := stats.ok.Load() - locked
	s.billing.Kill(t)
	before := s.countOrders(t, "true")
	release()
	if !testinfra.Poll(30*time.Second, 50*time.Millisecond, func() bool { return s.billingBackends(t, false) == 0 }) {
		var rows []map[string]any
		s.pg.DB().Raw(`SELECT pid, state, wait_event_type, wait_event, backend_start, left(query, 60) AS query FROM pg_stat_activity WHERE usename = ?`, s.billingDB.User).Scan(&rows)
		t.Fatalf("the killed billing's sessions are still there after 30s: %v", rows)
	}
	orphaned := s.countOrders(t, "true") - before
	s.billing.Start(t)
	ready := waitStatus(t, 30*time.Second, s.billingURL("/ready"), http.StatusOK)
	return fmt.Sprintf("killed holding over %d unacked orders; its blocked insert then committed %d row(s) that were never acked (redelivered, deduplicated); consuming again %s after start",
		held, orphaned, ready.Round(time.Millisecond))
}

// faultBrokerRestart stops RabbitMQ gracefully and starts it again with the
// same data; publishing and consuming must resume within 10s by themselves.
func (s *stack) faultBrokerRestart(t *testing.T, _ *loadStats) string {
	stopped := s.rmq.Stop(t)
	s.rmq.Start(t)
	publishing := s.sinceBrokerBack(waitStatus(t, recoverLimit, s.gatewayURL("/ready"), http.StatusOK))
	consuming := s.sinceBrokerBack(waitStatus(t, recoverLimit, s.billingURL("/ready"), http.StatusOK))
	if publishing > recoverLimit || consuming > recoverLimit {
		t.Errorf("after the broker was back: publishing after %s, consuming after %s; want within %s", publishing, consuming, recoverLimit)
	}
	return fmt.Sprintf("stopped in %s; once it listened again: gateway publishing after %s, billing consuming after %s",
		stopped.Round(time.Millisecond), publishing.Round(time.Millisecond), consuming.Round(time.Millisecond))
}

// faultPostgresRestart stops billing's PostgreSQL without a checkpoint
// (crash recovery at the next start) once billing is retrying a write, and
// starts it again; billing must write again by itself.
func (s *stack) faultPostgresRestart(t *testing.T, _ *loadStats) string {
	warned := s.billing.CountLog("database unavailable")
	s.pg.Stop(t, "immediate")
	testenv.WaitFor(t, 30*time.Second, "billing retrying a write", func() bool {
		return s.billing.CountLog("database unavailable") > warned
	})
	s.pg.Start(t)
	before := s.tryCountOrders()
	writing := testenv.WaitFor(t, 30*time.Second, "billing writing again", func() bool {
		return s.tryCountOrders() > before
	})
	return fmt.Sprintf("billing held its batch and wrote again %s after the start", writing.Round(time.Millisecond))
}

// faultGatewayRestart: SIGINT, in-flight requests finish, exit 0; clients
// see refused connections until the new gateway listens.
func (s *stack) faultGatewayRestart(t *testing.T, _ *loadStats) string {
	return gracefulRestart(t, s.gateway, s.gatewayURL("/ready"))
}
