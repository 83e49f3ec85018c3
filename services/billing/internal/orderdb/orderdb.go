// Package orderdb stores orders in PostgreSQL through gorm and owns the
// orders table's schema: versioned SQL files in migrations/, applied at
// start by Migrate.
package orderdb

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"

	"gorm.io/gorm"

	"moviestream/pkg/pgdb"
	"moviestream/services/billing/internal/order"
)

// migrationLock keys the advisory lock that serialises migrations.
const migrationLock int64 = 0x6f7264657273 // "orders"

// migrations holds the orders table's schema as goose files, applied in
// order by Migrate; see docs/migrations.md.
//
//go:embed migrations/*.sql
var migrations embed.FS

// migrationFiles is the migrations directory itself (fs.Sub fails only on
// an invalid name, and "migrations" is a valid one).
var migrationFiles, _ = fs.Sub(migrations, "migrations")

// Store implements order.Store.
type Store struct {
	db *gorm.DB
}

// New returns a store over db.
func New(db *gorm.DB) *Store { return &Store{db: db} }

// Migrate applies the migrations the database lacks, logging each one;
// instances starting together take turns.
func (s *Store) Migrate(ctx context.Context, log *slog.Logger) error {
	if err := pgdb.Migrate(ctx, s.db, migrationLock, migrationFiles, log); err != nil {
		return fmt.Errorf("orderdb: %w", err)
	}
	return nil
}

// insertOrders writes a whole batch as one statement: four arrays unnested
// into rows. Measured against gorm's multi-row Create of the same batch it
// cuts the per-row cost several times, because nothing is reflected per row
// and the statement text does not grow with the batch. A conflicting
// message_id (a redelivery) is skipped.
const insertOrders = `INSERT INTO orders (message_id, user_id, number_of_items, total_amount)
SELECT * FROM unnest(?::text[], ?::text[], ?::integer[], ?::numeric[])
ON CONFLICT (message_id) DO NOTHING`

// Save implements order.Store. One statement: all rows commit together or
// none do.
func (s *Store) Save(ctx context.Context, orders []order.Order) (int64, error) {
	if len(orders) == 0 {
		return 0, nil
	}
	var ids, users, items, totals arrayLiteral
	for _, o := range orders {
		if o.MessageID == "" {
			ids.addNull()
		} else {
			ids.addQuoted(o.MessageID)
		}
		users.addQuoted(o.UserID)
		items.addRaw(strconv.FormatInt(int64(o.NumberOfItems), 10))
		totals.addRaw(o.TotalAmount.String())
	}
	res := s.db.WithContext(ctx).Exec(insertOrders, ids.value(), users.value(), items.value(), totals.value())
	if err := res.Error; err != nil {
		if pgdb.IsUnavailable(err) {
			return 0, fmt.Errorf("orderdb: save %d orders: %w: %w", len(orders), order.ErrUnavailable, err)
		}
		return 0, fmt.Errorf("orderdb: save %d orders: %w", len(orders), err)
	}
	return res.RowsAffected, nil
}

// arrayLiteral builds PostgreSQL array input text, e.g. {"a","b\"c",NULL}.
// Passed as a single text parameter, so gorm does not expand it into a list.
type arrayLiteral struct{ b strings.Builder }

var arrayEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

func (a *arrayLiteral) sep() {
	if a.b.Len() == 0 {
		a.b.WriteByte('{')
	} else {
		a.b.WriteByte(',')
	}
}

func (a *arrayLiteral) addQuoted(s string) {
	a.sep()
	a.b.WriteByte('"')
	_, _ = arrayEscaper.WriteString(&a.b, s)
	a.b.WriteByte('"')
}

func (a *arrayLiteral) addRaw(s string) { a.sep(); a.b.WriteString(s) }
func (a *arrayLiteral) addNull()        { a.sep(); a.b.WriteString("NULL") }
func (a *arrayLiteral) value() string   { return a.b.String() + "}" }
