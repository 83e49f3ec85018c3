// Package moviedbtest holds what the inventory's store and HTTP tests share
// about the movies table: a migrated store on a fresh database, bulk
// seeding, and a look at the listing queries the server runs.
package moviedbtest

import (
	"context"
	"testing"
	"time"

	"gorm.io/gorm"

	"moviestream/pkg/pgdb/pgtest"
	"moviestream/services/inventory/internal/moviedb"
)

// Open returns a store on a fresh database with every migration applied,
// and the database, for seeding and inspection.
func Open(tb testing.TB) (*moviedb.Store, *gorm.DB) {
	tb.Helper()
	db := pgtest.Open(tb)
	s := moviedb.New(db)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Migrate(ctx, nil); err != nil {
		tb.Fatalf("Migrate: %v", err)
	}
	return s, db
}

// SeedSeries inserts n movies in one statement, titled "<prefix> <i>" for
// i = 1..n, with a description of descLen characters.
func SeedSeries(tb testing.TB, db *gorm.DB, prefix string, n, descLen int) {
	tb.Helper()
	// No autovacuum on this table: a worker busy with it when the test
	// ends holds up the test role's DROP DATABASE (42501: it may not end
	// an autovacuum worker; pgtest retries, this spares the wait). Tests
	// that need statistics run ANALYZE themselves.
	if err := db.Exec(`ALTER TABLE movies SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)`).Error; err != nil {
		tb.Fatalf("disable autovacuum: %v", err)
	}
	err := db.Exec(`INSERT INTO movies (title, description)
		SELECT ? || ' ' || i, repeat('d', ?) FROM generate_series(1, ?) AS i`, prefix, descLen, n).Error
	if err != nil {
		tb.Fatalf("seed %d movies: %v", n, err)
	}
}

// RunningLists counts the listing queries (Store.Each) running in db's
// database, other than this session's.
func RunningLists(tb testing.TB, db *gorm.DB) int {
	tb.Helper()
	var n int
	err := db.Raw(`SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()
		  AND state = 'active' AND query LIKE 'SELECT id, title, description FROM movies%'`).Scan(&n).Error
	if err != nil {
		tb.Fatalf("pg_stat_activity: %v", err)
	}
	return n
}
