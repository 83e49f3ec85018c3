package loadtest

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"moviestream/pkg/pgdb"
)

// scratchName is the bare consumer's database of run.
func scratchName(runID string) string { return "test_loadtest_" + runID }

// CreateScratchDB creates the run's scratch database as the test role and
// returns its config.
func CreateScratchDB(ctx context.Context, admin pgdb.Config, runID string) (pgdb.Config, error) {
	conn, err := connect(ctx, admin)
	if err != nil {
		return pgdb.Config{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	cfg := admin
	cfg.Name = scratchName(runID)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{cfg.Name}.Sanitize()); err != nil {
		return pgdb.Config{}, fmt.Errorf("loadtest: create database %s: %w", cfg.Name, err)
	}
	return cfg, nil
}

// DropScratchDB drops the run's scratch database, if there is one.
func DropScratchDB(ctx context.Context, admin pgdb.Config, runID string) error {
	conn, err := connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	name := scratchName(runID)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("loadtest: drop database %s: %w", name, err)
	}
	return nil
}
