// Package orderdb stores orders in PostgreSQL through gorm and owns the
// orders table's schema.
package orderdb

import (
	"context"
	"database/sql"
	"fmt"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"moviestream/pkg/pgdb"
	"moviestream/services/billing/internal/order"
)

const migrationLock int64 = 0x6f7264657273 // "orders"

// schema is idempotent: it runs at every start. total_amount is
// numeric(12,2) because money is never a float; message_id is UNIQUE so a
// redelivered message cannot become a second order (NULLs, from messages
// published by hand without an id, do not collide).
var schema = []string{
	`CREATE TABLE IF NOT EXISTS orders (
		id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		message_id      text UNIQUE,
		user_id         text NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 64),
		number_of_items integer NOT NULL CHECK (number_of_items >= 1),
		total_amount    numeric(12,2) NOT NULL CHECK (total_amount >= 0),
		created_at      timestamptz NOT NULL DEFAULT now()
	)`,
}

type row struct {
	ID            int64 `gorm:"primaryKey;->"`
	MessageID     sql.NullString
	UserID        string
	NumberOfItems int32
	TotalAmount   string
}

func (row) TableName() string { return "orders" }

// Store implements order.Store.
type Store struct {
	db *gorm.DB
}

// New returns a store over db.
func New(db *gorm.DB) *Store { return &Store{db: db} }

// Migrate creates the orders table if needed.
func (s *Store) Migrate(ctx context.Context) error {
	if err := pgdb.Migrate(ctx, s.db, migrationLock, schema...); err != nil {
		return fmt.Errorf("orderdb: %w", err)
	}
	return nil
}

// Save implements order.Store with one multi-row INSERT ... ON CONFLICT
// (message_id) DO NOTHING: a single statement, so all rows commit together
// or none do.
func (s *Store) Save(ctx context.Context, orders []order.Order) (int64, error) {
	if len(orders) == 0 {
		return 0, nil
	}
	rows := make([]row, len(orders))
	for i, o := range orders {
		rows[i] = row{
			MessageID:     sql.NullString{String: o.MessageID, Valid: o.MessageID != ""},
			UserID:        o.UserID,
			NumberOfItems: o.NumberOfItems,
			TotalAmount:   o.TotalAmount.String(),
		}
	}
	res := s.db.WithContext(ctx).
		Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "message_id"}}, DoNothing: true}).
		Omit("ID").
		Create(&rows)
	if err := res.Error; err != nil {
		if pgdb.IsUnavailable(err) {
			return 0, fmt.Errorf("orderdb: save %d orders: %w: %w", len(orders), order.ErrUnavailable, err)
		}
		return 0, fmt.Errorf("orderdb: save %d orders: %w", len(orders), err)
	}
	return res.RowsAffected, nil
}
