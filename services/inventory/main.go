// Command inventory serves the movie catalogue: a CRUD REST API over the
// movies table in PostgreSQL.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"

	"moviestream/pkg/config"
	"moviestream/pkg/pgdb"
	"moviestream/pkg/web"
	"moviestream/services/inventory/internal/httpapi"
	"moviestream/services/inventory/internal/moviedb"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("service", "inventory")
	if err := run(ctx, log); err != nil {
		log.Error("inventory stopped", "err", err)
		os.Exit(1)
	}
	log.Info("inventory stopped cleanly")
}

func run(ctx context.Context, log *slog.Logger) error {
	// Configuration.
	if err := config.Load(); err != nil {
		return err
	}
	var env config.Reader
	port := env.Int("INVENTORY_PORT")
	trusted := env.List("INVENTORY_TRUSTED_PROXIES")
	dbCfg := pgdb.Config{
		Host:     env.String("INVENTORY_DB_HOST"),
		Port:     env.String("INVENTORY_DB_PORT"),
		Name:     env.String("INVENTORY_DB_NAME"),
		User:     env.String("INVENTORY_DB_USER"),
		Password: env.String("INVENTORY_DB_PASSWORD"),
	}
	if err := env.Err(); err != nil {
		return err
	}
	log.Info("starting", "port", port, "database", dbCfg.String())

	// Infrastructure and domain; nothing touches the network yet.
	db, err := pgdb.Open(dbCfg)
	if err != nil {
		return err
	}
	defer pgdb.Close(db)
	store := moviedb.New(db)

	// Adapters. Until the database answers and the schema is in place, the
	// gate answers 503 JSON to everything but /health: the process is
	// alive, so a supervisor never marks it errored, but not ready.
	handler, err := httpapi.New(store, log, trusted)
	if err != nil {
		return err
	}
	gate := web.NewGate(handler, "/health", "movie storage is unavailable, retry later")

	g, ctx := errgroup.WithContext(ctx)
	// Serve until a signal; Serve drains in-flight requests before returning.
	g.Go(func() error {
		return web.ListenAndServe(ctx, web.ServerConfig{Addr: fmt.Sprintf(":%d", port)}, gate, log)
	})
	// Wait for the database with backoff instead of exiting, then open.
	g.Go(func() error {
		if err := pgdb.Wait(ctx, db, log); err != nil {
			return shutdownOrErr(ctx, err)
		}
		if err := store.Migrate(ctx); err != nil {
			return shutdownOrErr(ctx, err)
		}
		gate.Open()
		log.Info("database ready, serving the movie API")
		return nil
	})
	return g.Wait()
}

// shutdownOrErr turns an error caused by the stop signal into a clean exit.
func shutdownOrErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}
