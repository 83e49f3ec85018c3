//go:build fault

package fault

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/e2e/testinfra"
	"moviestream/pkg/broker"
)

// Size and bounds of TestPoisonMessageCrashesBilling.
const (
	poisonID       = "poison-1"
	poisonBacklog  = 500 // valid orders around it
	maxRestarts    = 15  // as PM2 would, but bounded
	poisonDeadline = 2 * time.Minute
)

var faultBuild struct {
	once sync.Once
	dir  string
	took time.Duration
	err  error
}

// faultinjectBinDir builds billing with -tags faultinject (once per run)
// and returns the directory holding that binary, also named billing.
func faultinjectBinDir(t *testing.T) string {
	t.Helper()
	faultBuild.once.Do(func() {
		start := time.Now()
		faultBuild.dir = filepath.Join(binDir, "faultinject")
		faultBuild.err = testinfra.Build(repoRoot, faultBuild.dir, os.Getenv("FAULT_RACE") == "1", []string{"faultinject"}, "./services/billing")
		faultBuild.took = time.Since(start)
	})
	if faultBuild.err != nil {
		t.Fatalf("build billing -tags faultinject: %v", faultBuild.err)
	}
	return faultBuild.dir
}

// TestPoisonMessageCrashesBilling: one message in a backlog makes billing
// crash whenever it processes it (a fault-injection build exits 3 on that
// message id). Restarted after each exit, as PM2 does, billing must end
// with that message dead-lettered by RabbitMQ's delivery limit, alone, and
// every other order written exactly once.
func TestPoisonMessageCrashesBilling(t *testing.T) {
	dir := faultinjectBinDir(t)
	s := newStack(t)
	env := s.billingEnv()
	env["BILLING_FAULT_CRASH_ON_MESSAGE_ID"] = poisonID
	s.billing = testinfra.StartService(t, dir, "billing", envFile, env)
	waitStatus(t, 30*time.Second, s.billingURL("/ready"), http.StatusOK) // table and queues
	if code, _ := s.billing.Stop(t, syscall.SIGINT, 30*time.Second); code != 0 {
		t.Fatalf("billing exit code %d after SIGINT, want 0", code)
	}

	keys := make([]string, poisonBacklog)
	msgs := make([]amqp.Publishing, 0, poisonBacklog+1)
	for i := range keys {
		if i == poisonBacklog/2 {
			msgs = append(msgs, orderMessage(poisonID, 900_000))
		}
		keys[i] = fmt.Sprintf("backlog-%03d", i)
		msgs = append(msgs, orderMessage(keys[i], i))
	}
	s.publish(t, msgs...)

	// Restart billing whenever it exits, until the poison is dead and every
	// valid order written, at most maxRestarts times.
	start := time.Now()
	s.billing.Start(t)
	restarts := 0
	exits := map[int]int{}
	var rowsAtCrash []int64
	done := testinfra.Poll(poisonDeadline, 100*time.Millisecond, func() bool {
		if !s.billing.Running() {
			exits[s.billing.Wait(t, 5*time.Second)]++
			rowsAtCrash = append(rowsAtCrash, s.tryCountOrders())
			if restarts == maxRestarts {
				return true // given up; checked below
			}
			restarts++
			s.billing.Start(t)
			return false
		}
		_, dead := s.ready(t)
		return dead >= 1 && s.tryCountOrders() >= poisonBacklog
	})
	took := time.Since(start)
	if !done || !s.billing.Running() {
		t.Fatalf("after %d restarts in %s (exit codes %v): poison not dead-lettered or orders missing (%d rows of %d)",
			restarts, took.Round(time.Millisecond), exits, s.tryCountOrders(), poisonBacklog)
	}
	if code, _ := s.billing.Stop(t, syscall.SIGINT, 30*time.Second); code != 0 {
		t.Errorf("billing exit code %d after SIGINT, want 0", code)
	}
	for code, n := range exits {
		if code != 3 {
			t.Errorf("billing exited %d time(s) with code %d, want only the injected crash (3)", n, code)
		}
	}
	// A crash while consuming in batches returns the whole batch, each
	// message charged a delivery; a crash while taking returned messages
	// one at a time charges only the message in hand.
	batchCrashes := crashesWhileConsuming(s.billing.Log())

	lost, duplicated := s.tally(t, keys)
	poisonRows := s.countOrders(t, "message_id = ?", poisonID)
	main, _ := s.ready(t)
	dead := s.takeDLQ(t)
	var contents []string
	poisonDead, validDead := 0, 0
	for _, d := range dead {
		reason, count := lastDeath(d.Headers)
		contents = append(contents, fmt.Sprintf("message_id=%s x-death reason=%s count=%d, x-error-reason: %v", d.MessageId, reason, count, orNone(d.Headers["x-error-reason"])))
		if d.MessageId == poisonID && reason == "delivery_limit" {
			poisonDead++
		} else {
			validDead++
		}
	}
	if lost != 0 || duplicated != 0 || poisonRows != 0 || main != 0 {
		t.Errorf("lost=%d duplicated=%d, poison rows=%d, %s holds %d; want all 0", lost, duplicated, poisonRows, queue, main)
	}
	if poisonDead != 1 || validDead != 0 {
		t.Errorf("DLQ: %d poison (delivery_limit), %d other messages; want exactly the poison:\n%s", poisonDead, validDead, strings.Join(contents, "\n"))
	}
	if batchCrashes > 1 {
		t.Errorf("billing crashed %d times while consuming in batches, want 1 (the first time): later crashes charged valid orders a delivery", batchCrashes)
	}
	if restarts > broker.DeliveryLimit+1 {
		t.Errorf("%d restarts, want at most %d (one per delivery of the poison)", restarts, broker.DeliveryLimit+1)
	}
	t.Logf("poison message %s in the middle of %d valid orders, billing -tags faultinject (built in %s): %d crashes (exit codes %v), %d restarts, done %s after the first start; rows written at each crash %v; crashes while consuming in batches: %d (so a valid order was handed out at most %d times, the poison %d); lost 0, duplicated 0, poison rows 0; DLQ (%d):\n  %s",
		poisonID, poisonBacklog, faultBuild.took.Round(time.Millisecond), exitCount(exits), exits, restarts, took.Round(time.Millisecond),
		rowsAtCrash, batchCrashes, batchCrashes+1, exitCount(exits), len(dead), strings.Join(contents, "\n  "))
}

// crashesWhileConsuming counts the runs in billing's log that subscribed
// ("consuming") and ended without stopping cleanly.
func crashesWhileConsuming(log string) int {
	n := 0
	for _, run := range strings.Split(log, ": start billing ===")[1:] {
		if strings.Contains(run, `"msg":"consuming"`) && !strings.Contains(run, "stopped cleanly") {
			n++
		}
	}
	return n
}

func orNone(v any) any {
	if v == nil {
		return "none"
	}
	return v
}

func exitCount(exits map[int]int) int {
	n := 0
	for _, c := range exits {
		n += c
	}
	return n
}

// lastDeath returns the reason and count of the most recent x-death entry.
func lastDeath(h amqp.Table) (reason string, count int64) {
	deaths, _ := h["x-death"].([]any)
	if len(deaths) == 0 {
		return "", 0
	}
	d, _ := deaths[0].(amqp.Table)
	reason, _ = d["reason"].(string)
	count, _ = d["count"].(int64)
	return reason, count
}

// takeDLQ removes every message from the DLQ and returns them: the end of
// a test reads what was dead-lettered.
func (s *stack) takeDLQ(t *testing.T) []amqp.Delivery {
	t.Helper()
	ch := s.amqpChannel(t)
	defer ch.Close()
	var out []amqp.Delivery
	for range 10_000 {
		d, ok, err := ch.Get(dlq, true)
		if err != nil {
			t.Fatalf("get from %s: %v", dlq, err)
		}
		if !ok {
			return out
		}
		out = append(out, d)
	}
	t.Fatalf("%s does not empty", dlq)
	return nil
}
