// Package pgdb opens PostgreSQL through gorm for the services that own a
// database, waits for it with backoff instead of exiting, applies versioned
// schema migrations (goose, see Migrate), and tells a transient outage from a
// real error.
package pgdb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"moviestream/pkg/backoff"
)

// Config locates a database. Password is a secret: it is never logged.
type Config struct {
	Host     string
	Port     string
	Name     string
	User     string
	Password string
	// MaxOpenConns bounds the pool; zero means 10. Migrate needs two.
	MaxOpenConns int
}

// DSN returns the connection URL for pgx.
func (c Config) DSN() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(c.User, c.Password),
		Host:     net.JoinHostPort(c.Host, c.Port),
		Path:     "/" + c.Name,
		RawQuery: "sslmode=disable&connect_timeout=5&application_name=moviestream",
	}
	return u.String()
}

// String describes the target without the password, for logs.
func (c Config) String() string {
	return fmt.Sprintf("postgres://%s@%s/%s", c.User, net.JoinHostPort(c.Host, c.Port), c.Name)
}

// Open returns a gorm handle. It does not touch the network: call Wait to
// block until the server answers.
func Open(cfg Config) (*gorm.DB, error) {
	db, err := gorm.Open(postgres.Open(cfg.DSN()), &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		DisableAutomaticPing:   true,
		TranslateError:         false,
	})
	if err != nil {
		return nil, fmt.Errorf("pgdb: open %s: %w", cfg, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("pgdb: pool %s: %w", cfg, err)
	}
	maxOpen := cfg.MaxOpenConns
	if maxOpen <= 0 {
		maxOpen = 10
	}
	sqlDB.SetMaxOpenConns(maxOpen)
	sqlDB.SetMaxIdleConns(maxOpen)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// Close releases the pool behind db.
func Close(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("pgdb: close: %w", err)
	}
	return sqlDB.Close()
}

// Wait pings the database until it answers or ctx ends, backing off between
// attempts and logging only when the state changes, so a service started
// before its database neither exits nor floods the log.
func Wait(ctx context.Context, db *gorm.DB, log *slog.Logger) error {
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("pgdb: wait: %w", err)
	}
	bo := backoff.New(200*time.Millisecond, 5*time.Second)
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := sqlDB.PingContext(pctx)
		cancel()
		if err == nil {
			if attempt > 1 {
				log.Info("database reachable", "attempts", attempt)
			}
			return nil
		}
		if attempt == 1 {
			log.Warn("database not reachable yet, retrying", "err", err)
		}
		if err := bo.Sleep(ctx); err != nil {
			return fmt.Errorf("pgdb: wait: %w", err)
		}
	}
}

// SQLState returns the SQLSTATE code PostgreSQL gave for err (e.g. "42501"
// for a missing privilege), or "" when err carries none: nil, a refused or
// lost connection, a client-side timeout.
func SQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// IsUnavailable reports whether err means the database could not be reached
// or went away (as opposed to rejecting the statement). Such errors are
// worth retrying later; the others are not.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03", // cannot_connect_now
			pgErr.Code == "53300", // too_many_connections
			pgErr.Code == "40001", // serialization_failure
			pgErr.Code == "40P01": // deadlock_detected
			return true
		}
		return false
	}
	// database/sql reports a closed pool or a dead conn with these texts only.
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "connection refused") ||
		strings.Contains(msg, "failed to connect")
}
