// Command inventory serves the movie catalogue: a CRUD REST API over the
// movies table in PostgreSQL.
package main

import (
	"context"
	"log/slog"
	"os"

	"golang.org/x/sync/errgroup"

	"moviestream/pkg/config"
	"moviestream/pkg/ginweb"
	"moviestream/pkg/lifecycle"
	"moviestream/pkg/pgdb"
	"moviestream/pkg/web"
	"moviestream/services/inventory/internal/httpapi"
	"moviestream/services/inventory/internal/moviedb"
)

func main() {
	os.Exit(lifecycle.Run("inventory", run))
}

func run(ctx context.Context, log *slog.Logger) error {
	// Configuration (lifecycle.Run loaded .env).
	var env config.Reader
	port := env.Port("INVENTORY_PORT")
	bind := env.Hosts("INVENTORY_BIND")
	adminAddrs := env.Addrs("INVENTORY_ADMIN_ADDR")
	trusted := env.List("INVENTORY_TRUSTED_PROXIES")
	dbCfg := pgdb.ConfigFromEnv(&env, "INVENTORY")
	if err := env.Err(); err != nil {
		return err
	}
	log.Info("starting", "port", port, "bind", bind, "admin_addr", adminAddrs, "database", dbCfg.String())

	// Infrastructure and domain; nothing touches the network yet.
	db, err := pgdb.Open(dbCfg)
	if err != nil {
		return err
	}
	defer pgdb.Close(db)
	store := moviedb.New(db)
	reg := web.NewRegistry()
	if err := pgdb.RegisterStats(reg, db, dbCfg.Name); err != nil {
		return err
	}

	// Adapters. Until the database answers and the schema is in place, the
	// gate answers 503 JSON to everything but /health: the process is
	// alive, so a supervisor never marks it errored, but not ready.
	handler, err := httpapi.New(store, log, trusted, ginweb.WithMetrics(web.NewHTTPMetrics(reg, "inventory")))
	if err != nil {
		return err
	}
	gate := web.NewGate(handler, web.HealthPath, "movie storage is unavailable, retry later")
	meta := web.NewMetadata("inventory", "moviestream's movie catalogue: a CRUD REST API over PostgreSQL", "none")

	g, ctx := errgroup.WithContext(ctx)
	// Serve until a signal; Serve drains in-flight requests before returning.
	// /metrics and /metadata are on the admin listener only.
	g.Go(func() error {
		return web.ListenAndServe(ctx, web.ServerConfig{Addrs: adminAddrs}, web.AdminMux(gate.Readiness, reg, meta), log)
	})
	g.Go(func() error {
		return web.ListenAndServe(ctx, web.ServerConfig{Addrs: web.HostPorts(bind, port)}, gate, log)
	})
	// Wait for the database with backoff instead of exiting, then open.
	g.Go(func() error {
		if err := pgdb.Wait(ctx, db, log); err != nil {
			return lifecycle.IgnoreStop(ctx, err)
		}
		if err := store.Migrate(ctx, log); err != nil {
			return lifecycle.IgnoreStop(ctx, err)
		}
		gate.Open()
		log.Info("database ready, serving the movie API")
		return nil
	})
	return g.Wait()
}
