package orderdb_test

import (
	"context"
	"errors"
	"fmt"
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
	n, err := s.Save(ctx, batch)
	if err != nil || n != 2 {
		t.Fatalf("first Save = %d, %v; want 2 new rows", n, err)
	}
	// A redelivery of the whole batch writes nothing.
	n, err = s.Save(ctx, batch)
	if err != nil || n != 0 {
		t.Fatalf("second Save = %d, %v; want 0 new rows", n, err)
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

func TestSaveKeepsQuotesAndBackslashesLiteral(t *testing.T) {
	t.Parallel()
	s, db, _ := newStoreDB(t)
	tricky := []string{`a"b`, `c\d`, `{e,f}`, `NULL`, `  g  `, `é "\" ,`}
	var batch []order.Order
	for i, u := range tricky {
		batch = append(batch, order.Order{MessageID: fmt.Sprintf("id,%d\"", i), Order: billingmsg.Order{UserID: u, NumberOfItems: 1, TotalAmount: 1}})
	}
	if n, err := s.Save(context.Background(), batch); err != nil || n != int64(len(tricky)) {
		t.Fatalf("Save = %d, %v", n, err)
	}
	for i, u := range tricky {
		var got string
		s2 := fmt.Sprintf("id,%d\"", i)
		if err := db.Raw(`SELECT user_id FROM orders WHERE message_id = ?`, s2).Scan(&got).Error; err != nil || got != u {
			t.Errorf("user_id for %q = %q (%v), want %q", s2, got, err, u)
		}
	}
}
