//go:build fault

package fault

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gorm.io/gorm"

	"moviestream/e2e/testinfra"
	"moviestream/pkg/testenv"
)

// reusedReason is billing's x-error-reason for a key its user reused.
const reusedReason = "idempotency key reused with a different order"

// TestDeadLetters: what reaches billing_queue.dlq through the gateway,
// and the way back. An idempotency key is per user: two users sharing one
// make two orders, a retry makes none, and a different order under a key
// its user already used is dead-lettered, the first order standing. An
// order the database rejected (a CHECK constraint) is dead-lettered alone
// and, once the constraint is gone, `dlq replay` brings it back as exactly
// one order, however many copies are replayed.
func TestDeadLetters(t *testing.T) {
	s := newReadyStack(t)

	t.Run("idempotency key reused", func(t *testing.T) {
		const key = "order-42"
		aliceFirst := order("alice", 1, "10.00")
		post := func(who string, body []byte) {
			t.Helper()
			if r := s.postOrder(key, body); r.status != http.StatusOK {
				t.Fatalf("%s POST with %s: %s", who, key, r)
			}
		}
		post("alice", aliceFirst)
		post("bob", order("bob", 2, "20.00"))
		testenv.WaitFor(t, 15*time.Second, "two orders under "+key, func() bool {
			return s.countOrders(t, "message_id = ?", key) == 2
		})
		post("alice (retry)", aliceFirst)
		s.barrier(t, "reuse-barrier-1")
		retried := s.countOrders(t, "message_id = ? AND user_id = 'alice'", key)
		warnsBefore := s.billing.CountLog(`"level":"WARN"`, "message dead-lettered", `"message_id":"`+key+`"`)
		post("alice (different order)", order("alice", 3, "30.00"))
		testenv.WaitFor(t, 15*time.Second, "the reused key dead-lettered", func() bool {
			_, dead := s.ready(t)
			return dead == 1
		})
		s.barrier(t, "reuse-barrier-2")

		var alice []orderRow
		s.query(t, func(db *gorm.DB) error {
			return db.Raw(`SELECT message_id, user_id, number_of_items, total_amount::text AS total_amount FROM orders WHERE message_id = ? AND user_id = 'alice'`, key).Scan(&alice).Error
		})
		bob := s.countOrders(t, "message_id = ? AND user_id = 'bob'", key)
		warned := s.billing.CountLog(`"level":"WARN"`, "message dead-lettered", `"message_id":"`+key+`"`, reusedReason) - warnsBefore
		dead := s.takeDLQ(t)
		if len(dead) != 1 {
			t.Fatalf("DLQ holds %d messages, want alice's second order alone: %+v", len(dead), dead)
		}
		if retried != 1 || len(alice) != 1 || alice[0].NumberOfItems != 1 || alice[0].TotalAmount != "10.00" || bob != 1 {
			t.Errorf("rows under %s: alice after her retry %d, alice at the end %+v, bob %d; want alice's first order (1 item, 10.00) once and bob's once", key, retried, alice, bob)
		}
		if dead[0].MessageId != key || dead[0].Headers["x-error-reason"] != reusedReason ||
			!strings.Contains(string(dead[0].Body), `"alice"`) || !strings.Contains(string(dead[0].Body), "30.00") {
			t.Errorf("DLQ: %+v, want alice's second order under %s with reason %q", dead[0], key, reusedReason)
		}
		if warned != 1 {
			t.Errorf("billing logged %d warnings naming %s and the reused key, want 1", warned, key)
		}
		t.Logf("Idempotency-Key %s: alice and bob 200 each -> 2 rows; alice's retry 200 -> still 1 row for her; alice's different order 200 -> no second row, 1 DLQ message (x-error-reason %q), %d billing warning; alice's row is her first order (%d item, %s)",
			key, dead[0].Headers["x-error-reason"], warned, alice[0].NumberOfItems, alice[0].TotalAmount)
	})

	t.Run("replay", func(t *testing.T) {
		dir := filepath.Join(binDir, "tools")
		start := time.Now()
		if err := testinfra.Build(repoRoot, dir, false, nil, "./services/billing/cmd/dlq"); err != nil {
			t.Fatalf("build dlq: %v", err)
		}
		built := time.Since(start)

		// A constraint billing's order rules do not know: PostgreSQL
		// rejects mallory's orders (23514), billing dead-letters them alone.
		const key = "replay-1"
		s.execOrders(t, `ALTER TABLE orders ADD CONSTRAINT fault_no_mallory CHECK (user_id <> 'mallory')`)
		dropped := false
		drop := func() {
			if !dropped {
				dropped = true
				s.execOrders(t, `ALTER TABLE orders DROP CONSTRAINT IF EXISTS fault_no_mallory`)
			}
		}
		defer drop()
		mallory := order("mallory", 4, "40.00")
		others := s.postOrders(t, "replay-other", 0, 3)
		for range 2 { // the order and its retry: two copies under one key
			if r := s.postOrder(key, mallory); r.status != http.StatusOK {
				t.Fatalf("POST mallory's order: %s", r)
			}
		}
		others = append(others, s.postOrders(t, "replay-other", 3, 3)...)
		testenv.WaitFor(t, 15*time.Second, "both copies dead-lettered", func() bool {
			_, dead := s.ready(t)
			return dead == 2
		})
		s.requireOrders(t, 15*time.Second, others...)
		list := s.runDLQ(t, dir, "list")
		if !strings.Contains(list, key) || !strings.Contains(list, "23514") {
			t.Errorf("dlq list does not show %s rejected with 23514:\n%s", key, list)
		}
		drop()

		first := s.runDLQ(t, dir, "replay", "-id", key, "-max", "1")
		s.requireOrders(t, 15*time.Second, key)
		second := s.runDLQ(t, dir, "replay", "-id", key)
		s.barrier(t, "replay-barrier")
		third := s.runDLQ(t, dir, "replay", "-id", key)
		rows := s.countOrders(t, "message_id = ?", key)
		main, dead := s.ready(t)
		for i, out := range []string{first, second} {
			if !strings.Contains(out, "replayed 1 message(s)") {
				t.Errorf("replay %d:\n%s\nwant 1 message moved", i+1, out)
			}
		}
		if !strings.Contains(third, "replayed 0 message(s)") {
			t.Errorf("replay 3:\n%s\nwant nothing moved", third)
		}
		if rows != 1 || main != 0 || dead != 0 {
			t.Errorf("after two replays: %d row(s) for %s, %s holds %d, %s holds %d; want 1, 0, 0", rows, key, queue, main, dlq, dead)
		}
		t.Logf("replay: mallory's order and its retry rejected by a CHECK constraint (23514), both copies dead-lettered alone, the 6 orders around them written; dlq list:\n%s\nconstraint dropped; replay -max 1: %q -> 1 row; replay again (second copy): %q -> still %d row; third replay: %q; queue and DLQ empty (dlq tool built in %s)",
			list, replayed(first), replayed(second), rows, replayed(third), built.Round(time.Millisecond))
	})

	if code, _ := s.billing.Stop(t, syscall.SIGINT, 30*time.Second); code != 0 {
		t.Errorf("billing exit code %d after SIGINT, want 0", code)
	}
	if main, dead := s.ready(t); main != 0 || dead != 0 {
		t.Errorf("at the end: %s holds %d, %s holds %d; want both empty", queue, main, dlq, dead)
	}
}

// order is a billing message body.
func order(user string, items int, total string) []byte {
	return []byte(fmt.Sprintf(`{"user_id":%q,"number_of_items":"%d","total_amount":%q}`, user, items, total))
}

// barrier posts a new order under key and waits for its row: billing
// settles batches in order, so every order posted before it has been
// written or skipped by then (a dead letter may still be on its way).
func (s *stack) barrier(t *testing.T, key string) {
	t.Helper()
	if r := s.postOrder(key, order("barrier", 1, "1.00")); r.status != http.StatusOK {
		t.Fatalf("POST %s: %s", key, r)
	}
	s.requireOrders(t, 15*time.Second, key)
}

// runDLQ runs the dlq command built in dir against the private node and
// returns its output.
func (s *stack) runDLQ(t *testing.T, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "dlq"), args...)
	cmd.Env = append(os.Environ(), "ENV_FILE="+envFile)
	for k, v := range s.brokerEnv() {
		cmd.Env = append(cmd.Env, k+"="+v) // the last of duplicate keys wins
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dlq %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// replayed is the summary line of a replay's output.
func replayed(out string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, "replayed ") {
			return line
		}
	}
	return out
}
