package orderdb_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"

	"moviestream/pkg/billingmsg"
	"moviestream/pkg/pgdb"
	"moviestream/pkg/pgdb/pgtest"
	"moviestream/services/billing/internal/order"
	"moviestream/services/billing/internal/orderdb"
)

func newStore(t testing.TB) (*orderdb.Store, func(query string) int64) {
	s, _, count := newStoreDB(t)
	return s, count
}

func newStoreDB(t testing.TB) (*orderdb.Store, *gorm.DB, func(query string) int64) {
	t.Helper()
	db := pgtest.Open(t)
	s := orderdb.New(db)
	if err := s.Migrate(context.Background(), nil); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	count := func(query string) int64 {
		var n int64
		if err := db.Raw(query).Scan(&n).Error; err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}
	return s, db, count
}

func TestSaveIsIdempotentOnMessageID(t *testing.T) {
	t.Parallel()
	s, count := newStore(t)
	ctx := context.Background()
	batch := []order.Order{
		{MessageID: "a", Order: billingmsg.Order{UserID: "u1", NumberOfItems: 1, TotalAmount: 100}},
		{MessageID: "b", Order: billingmsg.Order{UserID: "u2", NumberOfItems: 2, TotalAmount: 18050}},
		{MessageID: "a", Order: billingmsg.Order{UserID: "u1", NumberOfItems: 1, TotalAmount: 100}}, // duplicate within the batch
	}
	saved, err := s.Save(ctx, batch)
	if err != nil || saved.Inserted != 2 {
		t.Fatalf("first Save = %+v, %v; want 2 new rows", saved, err)
	}
	// A redelivery of the whole batch writes nothing.
	saved, err = s.Save(ctx, batch)
	if err != nil || saved.Inserted != 0 {
		t.Fatalf("second Save = %+v, %v; want 0 new rows", saved, err)
	}
	if got := count(`SELECT count(*) FROM orders`); got != 2 {
		t.Fatalf("orders = %d, want 2", got)
	}
}

func TestSaveWithoutMessageIDKeepsEveryOrder(t *testing.T) {
	t.Parallel()
	s, count := newStore(t)
	o := order.Order{Order: billingmsg.Order{UserID: "hand", NumberOfItems: 1, TotalAmount: 1}}
	for range 2 {
		if _, err := s.Save(context.Background(), []order.Order{o}); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(`SELECT count(*) FROM orders WHERE message_id IS NULL`); got != 2 {
		t.Fatalf("orders without message id = %d, want 2", got)
	}
}

func TestMoneyIsExact(t *testing.T) {
	t.Parallel()
	s, count := newStore(t)
	var batch []order.Order
	for i := range 3 { // 0.10 + 0.20 + 9999999999.99 must stay exact
		batch = append(batch, order.Order{MessageID: string(rune('x' + i)), Order: billingmsg.Order{UserID: "u", NumberOfItems: 1, TotalAmount: []billingmsg.Amount{10, 20, 999_999_999_999}[i]}})
	}
	if _, err := s.Save(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if got := count(`SELECT (sum(total_amount) * 100)::bigint FROM orders`); got != 1_000_000_000_029 {
		t.Fatalf("sum in cents = %d, want 1000000000029", got)
	}
}

func TestMigrateTwiceKeepsRows(t *testing.T) {
	t.Parallel()
	s, db, count := newStoreDB(t)
	if _, err := s.Save(context.Background(), []order.Order{{MessageID: "m", Order: billingmsg.Order{UserID: "u", NumberOfItems: 1, TotalAmount: 1}}}); err != nil {
		t.Fatal(err)
	}
	records := pgtest.VersionTable(t, db)
	if err := s.Migrate(context.Background(), nil); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if got := count(`SELECT count(*) FROM orders`); got != 1 {
		t.Fatalf("orders after re-migrate = %d, want 1", got)
	}
	if diff := cmp.Diff(records, pgtest.VersionTable(t, db)); diff != "" {
		t.Errorf("goose_db_version after re-migrate (-first +now):\n%s", diff)
	}
}

func TestSaveWhileDatabaseDownIsUnavailable(t *testing.T) {
	t.Parallel()
	db, err := pgdb.Open(pgtest.UnreachableConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pgdb.Close(db)
	_, err = orderdb.New(db).Save(context.Background(), []order.Order{{Order: billingmsg.Order{UserID: "u", NumberOfItems: 1, TotalAmount: 1}}})
	if !errors.Is(err, order.ErrUnavailable) {
		t.Fatalf("Save with database down = %v, want ErrUnavailable", err)
	}
}

// TestSaveTellsWhoseFaultAFailureIs: only what an order's own values cause
// (SQLSTATE class 22 or 23) is ErrRejected; a refusal of the database's
// own, whatever its SQLSTATE, is ErrUnavailable.
func TestSaveTellsWhoseFaultAFailureIs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		setup  []string // run by the table's owner before Save
		userID string
		want   error
	}{
		{"check violation", []string{`ALTER TABLE orders ADD CONSTRAINT test_c CHECK (user_id <> 'no')`}, "no", order.ErrRejected},
		{"data exception", []string{`ALTER TABLE orders ADD CONSTRAINT test_d CHECK (number_of_items / CASE WHEN user_id = 'zero' THEN 0 ELSE 1 END > 0)`}, "zero", order.ErrRejected},
		{"duplicate on a unique index of order data", []string{`CREATE UNIQUE INDEX test_one_per_user ON orders (user_id)`,
			`INSERT INTO orders (message_id, user_id, number_of_items, total_amount) VALUES ('other', 'u', 1, 1)`}, "u", order.ErrRejected},
		{"duplicate id from the table's sequence", []string{`INSERT INTO orders (id, message_id, user_id, number_of_items, total_amount)
			OVERRIDING SYSTEM VALUE VALUES (1, 'manual', 'u', 1, 1)`}, "u", order.ErrUnavailable},
		{"insert privilege revoked", []string{`REVOKE INSERT ON orders FROM CURRENT_USER`}, "u", order.ErrUnavailable},
		{"table missing", []string{`ALTER TABLE orders RENAME TO orders_elsewhere`}, "u", order.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, db, _ := newStoreDB(t)
			for _, q := range tt.setup {
				if err := db.Exec(q).Error; err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			_, err := s.Save(context.Background(), []order.Order{{MessageID: "m", Order: billingmsg.Order{UserID: tt.userID, NumberOfItems: 1, TotalAmount: 1}}})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Save = %v, want %v", err, tt.want)
			}
			other := map[error]error{order.ErrRejected: order.ErrUnavailable, order.ErrUnavailable: order.ErrRejected}[tt.want]
			if errors.Is(err, other) {
				t.Fatalf("Save = %v: both ErrRejected and ErrUnavailable", err)
			}
		})
	}
}

func TestSaveKeepsQuotesAndBackslashesLiteral(t *testing.T) {
	t.Parallel()
	s, db, _ := newStoreDB(t)
	tricky := []string{`a"b`, `c\d`, `{e,f}`, `NULL`, `  g  `, `é "\" ,`}
	var batch []order.Order
	for i, u := range tricky {
		batch = append(batch, order.Order{MessageID: fmt.Sprintf("id,%d\"", i), Order: billingmsg.Order{UserID: u, NumberOfItems: 1, TotalAmount: 1}})
	}
	if saved, err := s.Save(context.Background(), batch); err != nil || saved.Inserted != int64(len(tricky)) {
		t.Fatalf("Save = %+v, %v", saved, err)
	}
	for i, u := range tricky {
		var got string
		s2 := fmt.Sprintf("id,%d\"", i)
		if err := db.Raw(`SELECT user_id FROM orders WHERE message_id = ?`, s2).Scan(&got).Error; err != nil || got != u {
			t.Errorf("user_id for %q = %q (%v), want %q", s2, got, err, u)
		}
	}
}

// TestIdempotencyKeysArePerUser: the key that dedupes is (user, message
// id). The same user retrying the same order makes one row; two users
// with the same key make two; a user reusing a key for a different order
// is reported and not written, and the first order stands, whether the
// first came in an earlier batch or earlier in the same one.
func TestIdempotencyKeysArePerUser(t *testing.T) {
	t.Parallel()
	o := func(id, user string, items int32, cents billingmsg.Amount) order.Order {
		return order.Order{MessageID: id, Order: billingmsg.Order{UserID: user, NumberOfItems: items, TotalAmount: cents}}
	}
	tests := []struct {
		name         string
		earlier      []order.Order // saved first, in its own batch
		batch        []order.Order
		wantInserted int64
		wantReused   []int
		wantRows     int64
	}{
		{"two users, one key", nil,
			[]order.Order{o("order-42", "alice", 1, 100), o("order-42", "bob", 1, 100)}, 2, nil, 2},
		{"same user retries the same order", []order.Order{o("order-42", "alice", 1, 100)},
			[]order.Order{o("order-42", "alice", 1, 100)}, 0, nil, 1},
		{"same user, same key, other order, later batch", []order.Order{o("order-42", "alice", 1, 100)},
			[]order.Order{o("order-42", "alice", 2, 100), o("order-43", "alice", 1, 100)}, 1, []int{0}, 2},
		{"other amount counts as another order", []order.Order{o("k", "alice", 1, 100)},
			[]order.Order{o("k", "alice", 1, 101)}, 0, []int{0}, 1},
		{"same batch: the first stands", nil,
			[]order.Order{o("k", "alice", 1, 100), o("k", "alice", 9, 100), o("k", "alice", 1, 100)}, 1, []int{1}, 1},
		{"a retry of the stored order after a reuse in the same batch", []order.Order{o("k", "alice", 1, 100)},
			[]order.Order{o("k", "alice", 5, 500), o("k", "alice", 1, 100)}, 0, []int{0}, 1},
		{"a retry among new orders: the new ones are written", []order.Order{o("k", "alice", 1, 100)},
			[]order.Order{o("n-1", "alice", 1, 100), o("k", "alice", 1, 100), o("", "bob", 1, 100), o("n-2", "bob", 3, 250)}, 3, nil, 4},
		{"no message id is never deduplicated", nil,
			[]order.Order{o("", "alice", 1, 100), o("", "alice", 1, 100)}, 2, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, count := newStore(t)
			ctx := context.Background()
			if len(tt.earlier) > 0 {
				if _, err := s.Save(ctx, tt.earlier); err != nil {
					t.Fatalf("earlier Save: %v", err)
				}
			}
			saved, err := s.Save(ctx, tt.batch)
			if err != nil {
				t.Fatalf("Save: %v", err)
			}
			if saved.Inserted != tt.wantInserted || !slices.Equal(saved.Reused, tt.wantReused) {
				t.Errorf("Save = %+v, want inserted %d, reused %v", saved, tt.wantInserted, tt.wantReused)
			}
			if n := count(`SELECT count(*) FROM orders`); n != tt.wantRows {
				t.Errorf("rows = %d, want %d", n, tt.wantRows)
			}
			// The first order under a key is the one stored.
			if len(tt.earlier) > 0 && len(tt.wantReused) > 0 {
				e := tt.earlier[0]
				if n := count(fmt.Sprintf(`SELECT count(*) FROM orders WHERE message_id = '%s' AND user_id = '%s' AND number_of_items = %d AND total_amount = %s`,
					e.MessageID, e.UserID, e.NumberOfItems, e.TotalAmount)); n != 1 {
					t.Errorf("the first order under the key was not kept")
				}
			}
		})
	}
}
