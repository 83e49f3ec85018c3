// Package moviedbtest holds what the inventory's store and HTTP tests share
// about the movies table: bulk seeding for tests over many rows.
package moviedbtest

import (
	"testing"

	"gorm.io/gorm"
)

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
