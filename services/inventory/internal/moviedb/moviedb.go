// Package moviedb stores movies in PostgreSQL through gorm. It owns the
// movies table's schema: versioned SQL files in migrations/, applied at
// start by Migrate.
package moviedb

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"moviestream/pkg/pgdb"
	"moviestream/services/inventory/internal/movie"
)

// migrationLock keys the advisory lock that serialises migrations.
const migrationLock int64 = 0x6d6f76696573 // "movies"

// migrations holds the movies table's schema as goose files, applied in
// order by Migrate; see docs/migrations.md.
//
//go:embed migrations/*.sql
var migrations embed.FS

// migrationFiles is the migrations directory itself (fs.Sub fails only on
// an invalid name, and "migrations" is a valid one).
var migrationFiles, _ = fs.Sub(migrations, "migrations")

// row is the table's shape; it never leaves this package.
type row struct {
	ID          int64 `gorm:"primaryKey"`
	Title       string
	Description string
}

func (row) TableName() string { return "movies" }

func (r row) movie() movie.Movie {
	return movie.Movie{ID: r.ID, Title: r.Title, Description: r.Description}
}

// Store implements movie.Store.
type Store struct {
	db *gorm.DB
}

// New returns a store over db.
func New(db *gorm.DB) *Store { return &Store{db: db} }

// Migrate applies the migrations the database lacks, logging each one;
// instances starting together take turns.
func (s *Store) Migrate(ctx context.Context, log *slog.Logger) error {
	if err := pgdb.Migrate(ctx, s.db, migrationLock, migrationFiles, log); err != nil {
		return fmt.Errorf("moviedb: %w", err)
	}
	return nil
}

// likeEscaper makes %, _ and \ literal in a LIKE pattern.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// titleMatch is the search condition. It is written as lower(title) LIKE
// lower(pattern), not ILIKE, so that it is exactly the expression of the
// trigram index movies_title_trgm_idx (0002): the planner can use that
// index for a term of three characters or more instead of reading every
// row.
const titleMatch = `lower(title) LIKE lower($%d) ESCAPE '\'`

// Each implements movie.Store. Rows go to fn as the server sends them
// (database/sql over pgx reads the result message by message), so a
// million movies take no more memory than one.
//
// The statement runs in pgx's QueryExecModeExec, as an unnamed statement,
// not the cached prepared statement gorm's queries get: PostgreSQL then
// plans every listing for its own term and limit. A cached statement
// switches to one generic plan after five runs, and no single plan fits
// every term: a rare term wants the trigram index (1 ms), a two-letter or
// very common one a scan of the table; the generic plan chose the index
// for both and took 1.7 s for "ze" on a million movies.
func (s *Store) Each(ctx context.Context, f movie.Filter, fn func(movie.Movie) error) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return fmt.Errorf("moviedb: list: %w", err)
	}
	// Our own cancel: when fn fails, Close would otherwise read (and drop)
	// the rest of the result before returning.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	query, args := listQuery(f)
	rows, err := sqlDB.QueryContext(ctx, query, append([]any{pgx.QueryExecModeExec}, args...)...)
	if err != nil {
		return wrap("list", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m movie.Movie
		if err := rows.Scan(&m.ID, &m.Title, &m.Description); err != nil {
			return wrap("list: scan", err)
		}
		if err := fn(m); err != nil {
			cancel()
			// The caller's own error, unwrapped: a failed write to a
			// client (EPIPE) must not read as a database outage.
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return wrap("list", err)
	}
	return nil
}

// listQuery is the statement Each runs for f, and its arguments.
func listQuery(f movie.Filter) (string, []any) {
	var (
		conds []string
		args  []any
	)
	if f.TitleContains != "" {
		args = append(args, "%"+likeEscaper.Replace(f.TitleContains)+"%")
		conds = append(conds, fmt.Sprintf(titleMatch, len(args)))
	}
	if f.AfterID > 0 {
		args = append(args, f.AfterID)
		conds = append(conds, fmt.Sprintf("id > $%d", len(args)))
	}
	var q strings.Builder
	q.WriteString("SELECT id, title, description FROM movies")
	if len(conds) > 0 {
		q.WriteString(" WHERE " + strings.Join(conds, " AND "))
	}
	q.WriteString(" ORDER BY id")
	if f.Limit > 0 {
		args = append(args, f.Limit)
		fmt.Fprintf(&q, " LIMIT $%d", len(args))
	}
	return q.String(), args
}

// Get implements movie.Store.
func (s *Store) Get(ctx context.Context, id int64) (movie.Movie, error) {
	var r row
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return movie.Movie{}, &movie.NotFoundError{ID: id}
	}
	if err != nil {
		return movie.Movie{}, wrap("get", err)
	}
	return r.movie(), nil
}

// Create implements movie.Store.
func (s *Store) Create(ctx context.Context, title, description string) (movie.Movie, error) {
	r := row{Title: title, Description: description}
	if err := s.db.WithContext(ctx).Select("Title", "Description").Create(&r).Error; err != nil {
		return movie.Movie{}, wrap("create", err)
	}
	return r.movie(), nil
}

// Update implements movie.Store.
func (s *Store) Update(ctx context.Context, id int64, title, description string) (movie.Movie, error) {
	var rows []row
	err := s.db.WithContext(ctx).Model(&rows).
		Clauses(clause.Returning{}).
		Where("id = ?", id).
		Updates(map[string]any{"title": title, "description": description, "updated_at": gorm.Expr("now()")}).Error
	if err != nil {
		return movie.Movie{}, wrap("update", err)
	}
	if len(rows) == 0 {
		return movie.Movie{}, &movie.NotFoundError{ID: id}
	}
	return rows[0].movie(), nil
}

// Delete implements movie.Store.
func (s *Store) Delete(ctx context.Context, id int64) (movie.Movie, error) {
	var rows []row
	err := s.db.WithContext(ctx).Clauses(clause.Returning{}).Where("id = ?", id).Delete(&rows).Error
	if err != nil {
		return movie.Movie{}, wrap("delete", err)
	}
	if len(rows) == 0 {
		return movie.Movie{}, &movie.NotFoundError{ID: id}
	}
	return rows[0].movie(), nil
}

// DeleteAll implements movie.Store.
func (s *Store) DeleteAll(ctx context.Context) (int64, error) {
	res := s.db.WithContext(ctx).Session(&gorm.Session{AllowGlobalUpdate: true}).Delete(&row{})
	if res.Error != nil {
		return 0, wrap("delete all", res.Error)
	}
	return res.RowsAffected, nil
}

func wrap(op string, err error) error {
	if pgdb.IsUnavailable(err) {
		return fmt.Errorf("moviedb: %s: %w: %w", op, movie.ErrUnavailable, err)
	}
	return fmt.Errorf("moviedb: %s: %w", op, err)
}
