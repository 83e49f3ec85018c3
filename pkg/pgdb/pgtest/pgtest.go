// Package pgtest gives each test its own fresh PostgreSQL database, created
// by the test role from .env (CREATEDB, not a superuser) and dropped when
// the test ends, so tests run in parallel without seeing each other's rows.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"testing"
	"time"

	"gorm.io/gorm"

	"moviestream/pkg/backoff"
	"moviestream/pkg/pgdb"
	"moviestream/pkg/testenv"
)

// AdminConfig is the test role's connection to the maintenance database.
func AdminConfig(tb testing.TB) pgdb.Config {
	tb.Helper()
	testenv.Load(tb)
	return pgdb.Config{
		Host:     testenv.Get(tb, "TEST_DB_HOST"),
		Port:     testenv.Get(tb, "TEST_DB_PORT"),
		Name:     "postgres",
		User:     testenv.Get(tb, "TEST_DB_USER"),
		Password: testenv.Get(tb, "TEST_DB_PASSWORD"),
	}
}

// NewDatabase creates an empty database and returns its config; it is
// dropped (with any open connections) in Cleanup.
func NewDatabase(tb testing.TB) pgdb.Config {
	tb.Helper()
	admin := AdminConfig(tb)
	adminDB, err := pgdb.Open(admin)
	if err != nil {
		tb.Fatalf("open admin connection: %v", err)
	}
	tb.Cleanup(func() { _ = pgdb.Close(adminDB) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := adminDB.WithContext(ctx).Exec("SELECT 1").Error; err != nil {
		testenv.Unavailable(tb, "PostgreSQL "+admin.String(), err)
	}

	cfg := admin
	cfg.Name = "test_" + randomHex(8)
	if err := adminDB.WithContext(ctx).Exec(fmt.Sprintf(`CREATE DATABASE %q`, cfg.Name)).Error; err != nil {
		tb.Fatalf("create database %s: %v", cfg.Name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE ends the test's sessions, but a non-superuser may not end
		// an autovacuum worker that started in the database (42501, after a
		// bulk load): the worker soon finishes, so try again.
		drop := fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, cfg.Name)
		bo := backoff.New(100*time.Millisecond, time.Second)
		for {
			err := adminDB.WithContext(ctx).Exec(drop).Error
			if err == nil {
				return
			}
			if pgdb.SQLState(err) != "42501" || bo.Sleep(ctx) != nil {
				tb.Errorf("drop database %s: %v", cfg.Name, err)
				return
			}
		}
	})
	return cfg
}

// Open creates a fresh database and returns a gorm handle to it.
func Open(tb testing.TB) *gorm.DB {
	tb.Helper()
	cfg := NewDatabase(tb)
	db, err := pgdb.Open(cfg)
	if err != nil {
		tb.Fatalf("open %s: %v", cfg, err)
	}
	// Registered after NewDatabase's cleanup, so it runs first: close our
	// pool before the database is dropped.
	tb.Cleanup(func() { _ = pgdb.Close(db) })
	return db
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// UnreachableConfig points at a port where no database listens, for tests
// of behaviour during an outage. pgdb.Open on it succeeds (it does not dial);
// every query fails as unavailable.
func UnreachableConfig(tb testing.TB) pgdb.Config {
	tb.Helper()
	return pgdb.Config{Host: "127.0.0.1", Port: strconv.Itoa(testenv.FreePort(tb)), Name: "nowhere", User: "nobody", Password: "unreachable-pw"}
}
