// Package orderdb stores orders in PostgreSQL through gorm and owns the
// orders table's schema: versioned SQL files in migrations/, applied at
// start by Migrate.
package orderdb

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
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
// and the statement text does not grow with the batch. An order whose
// (user_id, message_id) is already stored, or appears earlier in the batch,
// is skipped; RETURNING names the keys this statement inserted, in batch
// order (the first order under a key is the one inserted).
const insertOrders = `INSERT INTO orders (message_id, user_id, number_of_items, total_amount)
SELECT message_id, user_id, number_of_items, total_amount
FROM unnest(?::text[], ?::text[], ?::integer[], ?::numeric[]) WITH ORDINALITY
     AS batch(message_id, user_id, number_of_items, total_amount, n)
ORDER BY n
ON CONFLICT (user_id, message_id) DO NOTHING
RETURNING user_id, message_id`

// storedOrders reads the orders stored under the given keys. It runs after
// insertOrders in the same transaction but as a new statement, so under
// READ COMMITTED it also sees an order that a concurrent billing instance
// committed under the same key while the insert waited for it.
const storedOrders = `SELECT o.user_id, o.message_id, o.number_of_items, o.total_amount::text AS total_amount
FROM orders o
JOIN unnest(?::text[], ?::text[]) AS k(user_id, message_id)
  ON o.user_id = k.user_id AND o.message_id = k.message_id`

type key struct{ userID, messageID string }

type storedRow struct {
	UserID        string
	MessageID     string
	NumberOfItems int32
	TotalAmount   string
}

// Save implements order.Store: one transaction, all rows commit together
// or none do.
func (s *Store) Save(ctx context.Context, orders []order.Order) (order.Saved, error) {
	if len(orders) == 0 {
		return order.Saved{}, nil
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
	var saved order.Saved
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var inserted []key
		rows, err := tx.Raw(insertOrders, ids.value(), users.value(), items.value(), totals.value()).Rows()
		if err != nil {
			return err
		}
		for rows.Next() {
			var k key
			var mid *string
			if err := rows.Scan(&k.userID, &mid); err != nil {
				rows.Close()
				return err
			}
			if mid != nil {
				k.messageID = *mid
				inserted = append(inserted, k)
			}
			saved.Inserted++
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		saved.Reused, err = s.reused(tx, orders, inserted)
		return err
	})
	if err != nil {
		return order.Saved{}, fmt.Errorf("orderdb: save %d orders: %w: %w", len(orders), classify(err), err)
	}
	return saved, nil
}

// errProbeDone rolls back the probe's transaction.
var errProbeDone = errors.New("probe done")

// Probe implements order.Store. The row is inserted with the service's own
// role, so a revoked privilege, a read-only database, a missing table or a
// lock that would make Save wait all fail the probe, within the lock and
// statement timeouts. The rollback leaves no row (only a gap in the ids).
func (s *Store) Probe(ctx context.Context) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for _, q := range []string{
			`SET LOCAL lock_timeout = '1s'`,
			`SET LOCAL statement_timeout = '5s'`,
			`INSERT INTO orders (user_id, number_of_items, total_amount) VALUES ('billing-probe', 1, 0)`,
		} {
			if err := tx.Exec(q).Error; err != nil {
				return err
			}
		}
		return errProbeDone
	})
	if errors.Is(err, errProbeDone) {
		return nil
	}
	return fmt.Errorf("orderdb: probe: %w: %w", order.ErrUnavailable, err)
}

// reused compares every keyed order that this batch did not insert with
// the order stored under its key, and returns the indexes of those that
// differ.
func (s *Store) reused(tx *gorm.DB, orders []order.Order, inserted []key) ([]int, error) {
	first := make(map[key]bool, len(inserted)) // keys whose first order this batch inserted
	for _, k := range inserted {
		first[k] = true
	}
	var check []int
	var users, ids arrayLiteral
	for i, o := range orders {
		if o.MessageID == "" {
			continue // published by hand without an id: never deduplicated
		}
		k := key{o.UserID, o.MessageID}
		if first[k] {
			first[k] = false // this is the inserted one; later ones are compared
			continue
		}
		check = append(check, i)
		users.addQuoted(o.UserID)
		ids.addQuoted(o.MessageID)
	}
	if len(check) == 0 {
		return nil, nil
	}
	var stored []storedRow
	if err := tx.Raw(storedOrders, users.value(), ids.value()).Scan(&stored).Error; err != nil {
		return nil, err
	}
	byKey := make(map[key]storedRow, len(stored))
	for _, r := range stored {
		byKey[key{r.UserID, r.MessageID}] = r
	}
	var reused []int
	for _, i := range check {
		o := orders[i]
		r, ok := byKey[key{o.UserID, o.MessageID}]
		if !ok {
			// Skipped as a conflict yet not stored: deleted meanwhile. Write
			// the batch again rather than lose the order.
			return nil, fmt.Errorf("order %q of user %q neither inserted nor stored", o.MessageID, o.UserID)
		}
		if r.NumberOfItems != o.NumberOfItems || r.TotalAmount != o.TotalAmount.String() {
			reused = append(reused, i)
		}
	}
	return reused, nil
}

// ownKeys are the unique constraints a conflicting order cannot be blamed
// for: id comes from the table's own sequence, and a duplicate (user_id,
// message_id) is skipped by ON CONFLICT (were one reported, the retry
// would skip it).
var ownKeys = map[string]bool{"orders_pkey": true, "orders_user_id_message_id_key": true}

// classify tells whose fault a failed insert is. Only what an order's own
// values can cause rejects it: a data exception (SQLSTATE class 22) or an
// integrity violation (class 23). Everything else is the database's
// problem, retried until it is solved: no connection, no privilege, no
// table, read-only, disk full, out of memory, timeouts, locks, and errors
// not known today.
func classify(err error) error {
	code := pgdb.SQLState(err)
	if code == "23505" {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && ownKeys[pgErr.ConstraintName] {
			return order.ErrUnavailable
		}
	}
	if strings.HasPrefix(code, "22") || strings.HasPrefix(code, "23") {
		return order.ErrRejected
	}
	return order.ErrUnavailable
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
