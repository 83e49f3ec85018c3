//go:build fault

package fault

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"moviestream/pkg/testenv"
)

// lockOrders takes a SHARE lock on billing's orders table in an open
// transaction: reads go on, billing's INSERT waits. It returns the release
// function (also run in Cleanup).
func (s *stack) lockOrders(t *testing.T) (release func()) {
	t.Helper()
	return s.lockOrdersIn(t, "SHARE")
}

// lockOrdersIn is lockOrders with another lock mode, e.g. ACCESS
// EXCLUSIVE, which blocks reads of orders too.
func (s *stack) lockOrdersIn(t *testing.T, mode string) (release func()) {
	t.Helper()
	cfg := s.pg.Admin
	cfg.Name = s.billingDB.Name
	db := s.pg.Open(t, cfg)
	tx := db.Begin()
	if tx.Error != nil {
		t.Fatalf("begin: %v", tx.Error)
	}
	if err := tx.Exec("LOCK TABLE orders IN " + mode + " MODE").Error; err != nil {
		t.Fatalf("lock orders: %v", err)
	}
	var once sync.Once
	release = func() { once.Do(func() { tx.Rollback() }) }
	t.Cleanup(release)
	return release
}

// billingBackends counts billing's database sessions; with waiting set,
// only those waiting for a lock.
func (s *stack) billingBackends(t *testing.T, waiting bool) int64 {
	t.Helper()
	q := "SELECT count(*) FROM pg_stat_activity WHERE usename = ?"
	if waiting {
		q += " AND wait_event_type = 'Lock'"
	}
	var n int64
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.pg.DB().WithContext(ctx).Raw(q, s.billingDB.User).Scan(&n).Error; err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	return n
}

// orderRow is what billing stored for a message.
type orderRow struct {
	MessageID     *string
	UserID        string
	NumberOfItems int
	TotalAmount   string
}

func (s *stack) allOrders(t *testing.T) []orderRow {
	t.Helper()
	var rows []orderRow
	s.query(t, func(db *gorm.DB) error {
		rows = rows[:0]
		return db.Raw(`SELECT message_id, user_id, number_of_items, total_amount::text AS total_amount FROM orders`).Scan(&rows).Error
	})
	return rows
}

// postUntilOK posts order i under key until it gets 200, retrying on 503
// and on connection errors, at most for budget. It returns the last reply.
func (s *stack) postUntilOK(key string, i int, budget time.Duration) (last reply, attempts int) {
	body, _, _, _ := orderBody(i)
	deadline := time.Now().Add(budget)
	for {
		attempts++
		last = s.postOrder(key, body)
		retry := last.err != nil || last.status == http.StatusServiceUnavailable
		if !retry || time.Now().After(deadline) {
			return last, attempts
		}
		pause(100 * time.Millisecond)
	}
}

// pause paces a retry loop (it is not a wait for a condition).
func pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	<-t.C
}

// expect503Fast posts a new order and checks the answer is 503 JSON with
// code service_unavailable, within limit.
func (s *stack) expect503Fast(t *testing.T, key string, limit time.Duration) reply {
	t.Helper()
	body, _, _, _ := orderBody(0)
	r := s.postOrder(key, body)
	if r.status != http.StatusServiceUnavailable || r.errCode() != "service_unavailable" {
		t.Errorf("POST %s: %s, want 503 service_unavailable", key, r)
	}
	if r.took > limit {
		t.Errorf("POST %s answered after %s, want within %s", key, r.took.Round(time.Millisecond), limit)
	}
	return r
}

// requireOrders waits until every key has exactly one row.
func (s *stack) requireOrders(t *testing.T, timeout time.Duration, keys ...string) time.Duration {
	t.Helper()
	return testenv.WaitFor(t, timeout, fmt.Sprintf("%d orders written", len(keys)), func() bool {
		var n int64
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.orders.WithContext(ctx).Raw("SELECT count(*) FROM orders WHERE message_id IN ?", keys).Scan(&n).Error; err != nil {
			return false
		}
		return n == int64(len(keys))
	})
}
