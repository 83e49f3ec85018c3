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

// List implements movie.Store.
func (s *Store) List(ctx context.Context, titleContains string) ([]movie.Movie, error) {
	q := s.db.WithContext(ctx).Order("id")
	if titleContains != "" {
		q = q.Where(`title ILIKE ? ESCAPE '\'`, "%"+likeEscaper.Replace(titleContains)+"%")
	}
	var rows []row
	if err := q.Find(&rows).Error; err != nil {
		return nil, wrap("list", err)
	}
	out := make([]movie.Movie, len(rows))
	for i, r := range rows {
		out[i] = r.movie()
	}
	return out, nil
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
