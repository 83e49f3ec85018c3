package orderdb_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"moviestream/pkg/billingmsg"
	"moviestream/pkg/pgdb/pgtest"
	"moviestream/services/billing/internal/order"
	"moviestream/services/billing/internal/orderdb"
)

// legacySchema is, verbatim, the statement orderdb ran at every start before
// versioned migrations: databases already deployed look like this.
const legacySchema = `CREATE TABLE IF NOT EXISTS orders (
		id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		message_id      text UNIQUE,
		user_id         text NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 64),
		number_of_items integer NOT NULL CHECK (number_of_items >= 1),
		total_amount    numeric(12,2) NOT NULL CHECK (total_amount >= 0),
		created_at      timestamptz NOT NULL DEFAULT now()
	)`

// orderRow is every column of orders; the amount as text, to compare it
// exactly.
type orderRow struct {
	ID            int64
	MessageID     *string
	UserID        string
	NumberOfItems int
	TotalAmount   string
	CreatedAt     time.Time
}

func allOrders(t *testing.T, db *gorm.DB) []orderRow {
	t.Helper()
	var rows []orderRow
	err := db.Raw(`SELECT id, message_id, user_id, number_of_items, total_amount::text AS total_amount, created_at
		FROM orders ORDER BY id`).Scan(&rows).Error
	if err != nil {
		t.Fatalf("read orders: %v", err)
	}
	return rows
}

// TestMigrateUpgradesLegacySchema: a database created by the code before
// versioned migrations, with orders in it, is adopted as version 1: the same
// rows and the same schema, as if 0001 had created it, and a second start
// changes nothing.
func TestMigrateUpgradesLegacySchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.Open(t)
	if err := db.Exec(legacySchema).Error; err != nil {
		t.Fatalf("legacy schema: %v", err)
	}
	err := db.Exec(`INSERT INTO orders (message_id, user_id, number_of_items, total_amount, created_at) VALUES
		('m-1', 'alice', 1, 0.10, '2023-04-05 06:07:08.123456+00'),
		(NULL, 'by hand', 2, 9999999999.99, '2023-04-05 06:07:09+00'),
		('m-gone', 'bob', 1, 1, now()),
		('m-3', ?, 64, 0, '2024-12-31 23:59:59.999999+05')`,
		strings.Repeat("ü", 64)).Error
	if err != nil {
		t.Fatalf("legacy rows: %v", err)
	}
	// A gap in the ids.
	if err := db.Exec(`DELETE FROM orders WHERE message_id = 'm-gone'`).Error; err != nil {
		t.Fatalf("delete: %v", err)
	}
	rows := allOrders(t, db)
	if len(rows) != 3 {
		t.Fatalf("legacy database not set up: %d rows", len(rows))
	}

	s := orderdb.New(db)
	_, fresh, _ := newStoreDB(t)
	pgtest.CheckUpgrade(t, db, fresh,
		func() []orderRow { return allOrders(t, db) },
		func() error { return s.Migrate(ctx, nil) })

	// The adopted table still deduplicates on message_id and numbers new
	// orders after the old ones.
	saved, err := s.Save(ctx, []order.Order{
		{MessageID: "m-1", Order: billingmsg.Order{UserID: "alice", NumberOfItems: 1, TotalAmount: 10}}, // redelivery of a legacy order
		{MessageID: "m-4", Order: billingmsg.Order{UserID: "carol", NumberOfItems: 3, TotalAmount: 300}},
	})
	if err != nil || saved.Inserted != 1 {
		t.Fatalf("Save after the upgrade = %+v, %v; want 1 new row", saved, err)
	}
	after := allOrders(t, db)
	if last := rows[len(rows)-1].ID; len(after) != 4 || after[3].ID <= last {
		t.Errorf("orders after Save = %+v, want one more with an id > %d", after, last)
	}
}
