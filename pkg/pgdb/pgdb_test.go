package pgdb_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"moviestream/pkg/pgdb"
	"moviestream/pkg/pgdb/pgtest"
)

func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	db, err := pgdb.Open(pgtest.UnreachableConfig(t))
	if err != nil {
		t.Fatalf("Open must not dial: %v", err)
	}
	defer pgdb.Close(db)
	err = db.Exec("SELECT 1").Error
	if err == nil || !pgdb.IsUnavailable(err) {
		t.Fatalf("IsUnavailable(%v) = false, want true", err)
	}
}

func TestStatementErrorsAreNotUnavailable(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t)
	err := db.Exec("SELECT * FROM no_such_table").Error
	if err == nil || pgdb.IsUnavailable(err) {
		t.Fatalf("IsUnavailable(%v) = true for a bad statement", err)
	}
	if pgdb.IsUnavailable(nil) {
		t.Fatal("IsUnavailable(nil) = true")
	}
}

func TestSQLState(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t)
	down, err := pgdb.Open(pgtest.UnreachableConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pgdb.Close(down)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"no such table", db.Exec("SELECT * FROM no_such_table").Error, "42P01"},
		{"division by zero, wrapped", fmt.Errorf("op: %w", db.Exec("SELECT 1/0").Error), "22012"},
		{"database unreachable", down.Exec("SELECT 1").Error, ""},
		{"nil", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := pgdb.SQLState(tt.err); got != tt.want {
				t.Errorf("SQLState(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestWaitGivesUpWhenContextEnds(t *testing.T) {
	t.Parallel()
	db, _ := pgdb.Open(pgtest.UnreachableConfig(t))
	defer pgdb.Close(db)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := pgdb.Wait(ctx, db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want DeadlineExceeded", err)
	}
}

func TestConfigStringHidesPassword(t *testing.T) {
	t.Parallel()
	cfg := pgtest.UnreachableConfig(t)
	if strings.Contains(cfg.String(), cfg.Password) {
		t.Fatalf("String() = %q leaks the password", cfg.String())
	}
	if !strings.Contains(cfg.DSN(), cfg.Password) {
		t.Fatal("DSN() lacks the password")
	}
}
