//go:build fault

package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"gorm.io/gorm"

	"moviestream/e2e/testinfra"
	"moviestream/pkg/testenv"
)

// refusalHold is how long each refusal of TestDatabaseRefusesWrites lasts
// once billing holds the orders: several attempts of its backoff.
const refusalHold = 3 * time.Second

// TestDatabaseRefusesWrites: PostgreSQL stays up but refuses billing's
// inserts, first by a revoked privilege, then as a read-only database.
// Orders keep being accepted; billing holds them unacked (none
// dead-lettered), says why on /ready (503, the SQLSTATE), logs the hold
// once, keeps its memory, and writes every order exactly once when the
// refusal ends. No process is restarted.
func TestDatabaseRefusesWrites(t *testing.T) {
	s := newReadyStack(t)
	pid := s.billing.Pid()
	rssBefore := s.billing.RSS(t)
	role, dbName := s.billingDB.User, s.billingDB.Name

	const n = 300 // orders posted during each refusal
	faults := []struct {
		name, sqlstate string
		inject, clear  func(t *testing.T)
	}{
		{
			name: "insert privilege revoked", sqlstate: "42501",
			inject: func(t *testing.T) { s.execOrders(t, fmt.Sprintf(`REVOKE INSERT ON orders FROM %q`, role)) },
			clear:  func(t *testing.T) { s.execOrders(t, fmt.Sprintf(`GRANT INSERT ON orders TO %q`, role)) },
		},
		{
			// A session default reaches new sessions only: billing's pooled
			// sessions are ended so that it reconnects read-only, and again
			// at the end, or they would stay read-only.
			name: "database read-only", sqlstate: "25006",
			inject: func(t *testing.T) {
				s.execAdmin(t, fmt.Sprintf(`ALTER DATABASE %q SET default_transaction_read_only = on`, dbName))
				s.terminateBilling(t)
			},
			clear: func(t *testing.T) {
				s.execAdmin(t, fmt.Sprintf(`ALTER DATABASE %q RESET default_transaction_read_only`, dbName))
				s.terminateBilling(t)
			},
		},
	}
	total := 0
	for k, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			linesBefore := logLines(s.billing.Log())
			f.inject(t)
			cleared := false
			defer func() {
				if !cleared {
					f.clear(t)
				}
			}()
			keys := s.postOrders(t, fmt.Sprintf("refused%d", k), k*n, n)
			testenv.WaitFor(t, 15*time.Second, "orders delivered to billing", func() bool {
				main, _ := s.ready(t)
				return main == 0
			})
			s.waitHeld(t, 15*time.Second, f.sqlstate)
			// The refusal lasts on purpose (the fault, not a wait for a
			// condition): billing must back off, not spin or log per attempt.
			pause(refusalHold)
			status, held := s.billingReadiness()
			if status != http.StatusServiceUnavailable || held.Database.Writable || held.Database.SQLState != f.sqlstate {
				t.Errorf("billing /ready during the refusal: %d %+v, want 503 with sqlstate %s", status, held.Database, f.sqlstate)
			}
			if _, dead := s.ready(t); dead != 0 {
				t.Fatalf("%d messages dead-lettered while the database refused writes, want 0", dead)
			}
			if got := s.countOrders(t, "message_id IN ?", keys); got != 0 {
				t.Errorf("%d orders written while the database refused writes?", got)
			}
			rssHeld := s.billing.RSS(t)

			f.clear(t)
			cleared = true
			written := s.requireOrders(t, 30*time.Second, keys...)
			readyAgain := waitStatus(t, 15*time.Second, s.billingURL("/ready"), http.StatusOK)
			lines := logLines(s.billing.Log()) - linesBefore
			lost, duplicated := s.tally(t, keys)
			total += n
			if lost != 0 || duplicated != 0 {
				t.Errorf("lost=%d duplicated=%d, want 0", lost, duplicated)
			}
			// One warning when the hold starts, one line when it ends.
			if lines > 2 {
				t.Errorf("billing logged %d lines for the refusal, want at most 2:\n%s", lines, s.billing.LogTail(lines))
			}
			t.Logf("%s: %d orders answered 200 and held unacked, /ready 503 with sqlstate %s after %d attempts in %s, 0 dead-lettered; billing logged %d lines for the whole fault; RSS %s while holding; after the fix all %d written once within %s (ready %s), lost 0, duplicated 0",
				f.name, n, held.Database.SQLState, held.Database.Attempts, time.Since(held.Database.Since).Round(100*time.Millisecond),
				lines, mib(rssHeld), n, written.Round(time.Millisecond), readyAgain.Round(time.Millisecond))
		})
	}

	rssAfter := s.billing.RSS(t)
	if !s.billing.Running() || s.billing.Pid() != pid {
		t.Errorf("billing restarted or died during the refusals")
	}
	// Bounded: the prefetch (at most 2,000 small messages) caps what billing
	// holds; growth beyond a few MiB would be a leak per attempt.
	if rssAfter > rssBefore+32<<20 {
		t.Errorf("billing RSS grew from %s to %s", mib(rssBefore), mib(rssAfter))
	}
	if code, _ := s.billing.Stop(t, syscall.SIGINT, 30*time.Second); code != 0 {
		t.Errorf("billing exit code %d after SIGINT, want 0", code)
	}
	if main, dead := s.ready(t); main != 0 || dead != 0 {
		t.Errorf("after the refusals: %s holds %d, %s holds %d; want both empty", queue, main, dlq, dead)
	}
	t.Logf("database refusing writes: %d orders, each written exactly once, DLQ empty; billing RSS %s before, %s after, same process throughout",
		total, mib(rssBefore), mib(rssAfter))
}

// Size of TestCrashLoopWhileWritesBlock.
const (
	crashLoopOrders = 300
	crashLoopKills  = 12
)

// TestCrashLoopWhileWritesBlock: with a backlog in the queue and the
// orders table locked, billing is started and killed again and again (a
// crash loop under PM2). It must take nothing from the queue while it
// cannot write, so no message spends a delivery; once the lock is gone
// and billing runs, every order is written exactly once.
func TestCrashLoopWhileWritesBlock(t *testing.T) {
	s := newStack(t)
	s.billingCreatesTopology(t)
	keys := make([]string, crashLoopOrders)
	msgs := make([]amqp.Publishing, crashLoopOrders)
	for i := range keys {
		keys[i] = fmt.Sprintf("crashloop-%03d", i)
		msgs[i] = orderMessage(keys[i], i)
	}
	s.publish(t, msgs...)
	if main, _ := s.ready(t); main != crashLoopOrders {
		t.Fatalf("queue holds %d messages, want %d", main, crashLoopOrders)
	}

	// ACCESS EXCLUSIVE: billing's probe INSERT waits for it and times out
	// (lock_timeout, 55P03). The test itself must not read orders meanwhile.
	release := s.lockOrdersIn(t, "ACCESS EXCLUSIVE")
	start := time.Now()
	var upTimes []time.Duration
	for i := range crashLoopKills {
		s.billing.Start(t)
		up := waitStatus(t, 10*time.Second, s.billingURL("/health"), http.StatusOK)
		// Up, connected, and refusing to consume because its probe failed.
		s.waitHeld(t, 10*time.Second, "55P03")
		upTimes = append(upTimes, up)
		// While billing runs, a message it had taken would be missing here.
		if main, _ := s.ready(t); main != crashLoopOrders {
			t.Errorf("kill %d: %d messages ready while billing runs, want all %d (billing took some while it could not write)", i+1, main, crashLoopOrders)
		}
		s.billing.Kill(t)
	}
	loop := time.Since(start)
	// rabbitmqctl's counts for quorum queues lag: wait until they settle on
	// everything ready, nothing handed out.
	var counts map[string]testinfra.QueueCounts
	settled := testenv.WaitFor(t, 15*time.Second, "rabbitmqctl: all ready, none unacknowledged", func() bool {
		counts = s.rmq.Queues(t, vhost)
		return counts[queue].Ready == crashLoopOrders && counts[queue].Unacked == 0
	})
	ctl := strings.TrimSpace(s.rmq.Ctl(t, "list_queues", "--quiet", "-p", vhost, "name", "messages_ready", "messages_unacknowledged", "consumers"))

	release()
	s.billing.Start(t)
	ready := waitStatus(t, 30*time.Second, s.billingURL("/ready"), http.StatusOK)
	written := s.requireOrders(t, 30*time.Second, keys...)
	// A returned (redelivered) message would be taken one at a time first,
	// and logged so: none means no delivery was spent during the loop.
	returned := s.billing.CountLog("returned messages processed one at a time")
	if code, _ := s.billing.Stop(t, syscall.SIGINT, 30*time.Second); code != 0 {
		t.Errorf("billing exit code %d after SIGINT, want 0", code)
	}
	lost, duplicated := s.tally(t, keys)
	main, dead := s.ready(t)
	if lost != 0 || duplicated != 0 || main != 0 || dead != 0 {
		t.Errorf("lost=%d duplicated=%d, %s holds %d, %s holds %d; want all 0", lost, duplicated, queue, main, dlq, dead)
	}
	if returned != 0 {
		t.Errorf("billing found %d run(s) of returned messages after the loop, want none: a message was handed out while writes were blocked", returned)
	}
	slowest := time.Duration(0)
	for _, d := range upTimes {
		slowest = max(slowest, d)
	}
	t.Logf("crash loop while writes block: %d orders waiting, orders table locked (ACCESS EXCLUSIVE); billing started and SIGKILLed %d times in %s (each up within %s, /ready 503 with sqlstate 55P03, then killed); queue after the loop: %d ready, %d unacknowledged (rabbitmqctl, settled in %s):\n%s\nafter the release: consuming %s after start, all %d written in %s, redelivered messages seen by billing: %d; lost 0, duplicated 0, DLQ empty",
		crashLoopOrders, crashLoopKills, loop.Round(time.Millisecond), slowest.Round(time.Millisecond),
		counts[queue].Ready, counts[queue].Unacked, settled.Round(time.Millisecond), ctl,
		ready.Round(time.Millisecond), crashLoopOrders, written.Round(time.Millisecond), returned)
}

// billingReadiness is billing's /ready body, the part these tests read.
type billingReadiness struct {
	Database struct {
		Writable bool      `json:"writable"`
		SQLState string    `json:"sqlstate"`
		Error    string    `json:"error"`
		Since    time.Time `json:"since"`
		Attempts int       `json:"attempts"`
	} `json:"database"`
}

// billingReadiness returns billing's /ready status code and body (0 when
// it does not answer).
func (s *stack) billingReadiness() (int, billingReadiness) {
	var b billingReadiness
	r := get(s.billingURL("/ready"))
	_ = json.Unmarshal(r.body, &b)
	return r.status, b
}

// waitHeld waits until billing's /ready answers 503 saying that the
// database refuses its writes with sqlstate.
func (s *stack) waitHeld(t *testing.T, timeout time.Duration, sqlstate string) billingReadiness {
	t.Helper()
	var b billingReadiness
	testenv.WaitFor(t, timeout, "billing /ready 503 with sqlstate "+sqlstate, func() bool {
		var status int
		status, b = s.billingReadiness()
		return status == http.StatusServiceUnavailable && !b.Database.Writable && b.Database.SQLState == sqlstate
	})
	return b
}

// execOrders runs a statement in billing's database as the superuser.
func (s *stack) execOrders(t *testing.T, stmt string, args ...any) {
	t.Helper()
	s.query(t, func(db *gorm.DB) error { return db.Exec(stmt, args...).Error })
}

// execAdmin runs a statement as the superuser in the "postgres" database,
// which billing's database settings do not affect.
func (s *stack) execAdmin(t *testing.T, stmt string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.pg.DB().WithContext(ctx).Exec(stmt, args...).Error; err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// terminateBilling ends every session of billing's role; billing's pool
// opens new ones.
func (s *stack) terminateBilling(t *testing.T) {
	t.Helper()
	s.execAdmin(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ?`, s.billingDB.User)
}

// tally compares the orders table with keys: lost counts keys without a
// row, duplicated the rows beyond the first of a key.
func (s *stack) tally(t *testing.T, keys []string) (lost, duplicated int) {
	t.Helper()
	var rows []struct {
		MessageID string
		N         int
	}
	s.query(t, func(db *gorm.DB) error {
		rows = rows[:0]
		return db.Raw(`SELECT message_id, count(*) AS n FROM orders WHERE message_id IN ? GROUP BY message_id`, keys).Scan(&rows).Error
	})
	seen := make(map[string]int, len(rows))
	for _, r := range rows {
		seen[r.MessageID] = r.N
	}
	for _, k := range keys {
		switch n := seen[k]; {
		case n == 0:
			lost++
		case n > 1:
			duplicated += n - 1
		}
	}
	return lost, duplicated
}

// postOrders posts orders first..first+n-1 through the gateway under keys
// prefix-i, eight at a time, and fails the test unless each answers 200.
func (s *stack) postOrders(t *testing.T, prefix string, first, n int) []string {
	t.Helper()
	keys := make([]string, n)
	for j := range keys {
		keys[j] = fmt.Sprintf("%s-%05d", prefix, first+j)
	}
	jobs := make(chan int)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
	)
	for range 8 {
		wg.Go(func() {
			for j := range jobs {
				body, _, _, _ := orderBody(first + j)
				if r := s.postOrder(keys[j], body); r.status != http.StatusOK {
					mu.Lock()
					failed = append(failed, keys[j]+": "+r.String())
					mu.Unlock()
				}
			}
		})
	}
	for j := range keys {
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d orders not answered 200, e.g. %s", len(failed), n, failed[0])
	}
	return keys
}

// orderMessage is order i as the gateway would publish it under key.
func orderMessage(key string, i int) amqp.Publishing {
	body, _, _, _ := orderBody(i)
	return amqp.Publishing{
		ContentType:  jsonType,
		DeliveryMode: amqp.Persistent,
		MessageId:    key,
		Timestamp:    time.Now().UTC(),
		AppId:        "fault-test",
		Body:         body,
	}
}

func logLines(log string) int { return strings.Count(log, "\n") }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
