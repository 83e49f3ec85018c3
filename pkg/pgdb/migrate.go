package pgdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"time"

	"github.com/pressly/goose/v3"
	"gorm.io/gorm"

	"moviestream/pkg/backoff"
)

// unlockTimeout bounds releasing the migration lock, which runs even when
// the caller's context has ended.
const unlockTimeout = 10 * time.Second

// Migrate applies the goose migrations in fsys that the database has not
// recorded yet, oldest first, and records each one in goose_db_version. fsys
// holds files named NNNN_description.sql at its root, each with a
// "-- +goose Up" section; each file runs in its own transaction unless it is
// marked "-- +goose NO TRANSACTION".
//
// The whole run, the creation of the version table included, happens while
// one dedicated connection holds the session-level advisory lock lockKey, so
// instances starting together apply each migration once, one after the
// other. The pool therefore needs at least two connections.
//
// log, if not nil, gets one line per migration applied; goose itself logs
// nothing.
func Migrate(ctx context.Context, db *gorm.DB, lockKey int64, fsys fs.FS, log *slog.Logger) (err error) {
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("pgdb: migrate: %w", err)
	}
	if sqlDB.Stats().MaxOpenConnections == 1 {
		// goose takes its own connection while ours holds the lock.
		return errors.New("pgdb: migrate: the pool must allow at least two connections")
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, fsys,
		goose.WithDisableGlobalRegistry(true), // ignore goose's package-level Go migrations
		goose.WithVerbose(false),
	)
	if err != nil {
		return fmt.Errorf("pgdb: migrate: %w", err)
	}

	unlock, err := lockSession(ctx, sqlDB, lockKey)
	if err != nil {
		return fmt.Errorf("pgdb: migrate: lock %d: %w", lockKey, err)
	}
	defer func() {
		if uerr := unlock(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("pgdb: migrate: unlock %d: %w", lockKey, uerr))
		}
	}()

	results, err := provider.Up(ctx)
	var partial *goose.PartialError
	if errors.As(err, &partial) && partial.Failed != nil && partial.Failed.Source != nil {
		// Name the file; the ones before it stay applied.
		return fmt.Errorf("pgdb: migrate: %s: %w", path.Base(partial.Failed.Source.Path), partial.Err)
	}
	if err != nil {
		return fmt.Errorf("pgdb: migrate: %w", err)
	}
	if log != nil {
		for _, r := range results {
			log.Info("schema migration applied",
				"version", r.Source.Version,
				"file", path.Base(r.Source.Path),
				"duration_seconds", r.Duration.Seconds())
		}
	}
	return nil
}

// lockSession takes the session-level advisory lock key on a connection of
// its own, waiting for it as long as ctx allows, and returns the function
// that releases it.
//
// It polls pg_try_advisory_lock instead of blocking in pg_advisory_lock: a
// statement waiting for the lock holds a snapshot, and CREATE INDEX
// CONCURRENTLY, run by the instance holding the lock, waits for every
// snapshot older than its own. Instances starting together would wait for
// each other forever. Between two tries a waiting session holds nothing.
func lockSession(ctx context.Context, db *sql.DB, key int64) (unlock func() error, err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	bo := backoff.New(20*time.Millisecond, time.Second)
	for {
		var locked bool
		if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&locked); err != nil {
			discard(conn)
			return nil, err
		}
		if locked {
			break
		}
		if err := bo.Sleep(ctx); err != nil {
			discard(conn)
			return nil, err
		}
	}
	return func() error {
		// Detached from ctx: the lock must go even when the caller gave up.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		var released bool
		err := conn.QueryRowContext(uctx, "SELECT pg_advisory_unlock($1)", key).Scan(&released)
		if err == nil && !released {
			err = errors.New("lock was not held")
		}
		if err != nil {
			discard(conn)
			return err
		}
		return conn.Close()
	}, nil
}

// discard closes conn's session instead of returning it to the pool, so a
// connection in an unknown state never goes back holding the lock: the
// server releases session locks when the session ends.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
}
