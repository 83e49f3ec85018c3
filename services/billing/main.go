// Command billing consumes billing_queue and writes one order per message
// into PostgreSQL, acknowledging each message only after its commit.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"

	"moviestream/pkg/broker"
	"moviestream/pkg/config"
	"moviestream/pkg/pgdb"
	"moviestream/pkg/web"
	"moviestream/services/billing/internal/consumer"
	"moviestream/services/billing/internal/orderdb"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("service", "billing")
	if err := run(ctx, log); err != nil {
		log.Error("billing stopped", "err", err)
		os.Exit(1)
	}
	log.Info("billing stopped cleanly")
}

func run(ctx context.Context, log *slog.Logger) error {
	// Configuration.
	if err := config.Load(); err != nil {
		return err
	}
	var env config.Reader
	healthPort := env.Int("BILLING_HEALTH_PORT")
	dbCfg := pgdb.Config{
		Host:     env.String("BILLING_DB_HOST"),
		Port:     env.String("BILLING_DB_PORT"),
		Name:     env.String("BILLING_DB_NAME"),
		User:     env.String("BILLING_DB_USER"),
		Password: env.String("BILLING_DB_PASSWORD"),
	}
	consumerCfg := consumer.Config{
		Broker: broker.Config{
			Host:     env.String("RABBITMQ_HOST"),
			Port:     env.String("RABBITMQ_PORT"),
			VHost:    env.String("RABBITMQ_VHOST"),
			User:     env.String("RABBITMQ_USER"),
			Password: env.String("RABBITMQ_PASSWORD"),
			Name:     "billing",
		},
		Topology:  broker.Topology{Queue: env.String("RABBITMQ_QUEUE")},
		Prefetch:  env.Int("BILLING_PREFETCH"),
		BatchSize: env.Int("BILLING_BATCH_SIZE"),
	}
	if err := env.Err(); err != nil {
		return err
	}
	log.Info("starting", "health_port", healthPort, "database", dbCfg.String(),
		"broker", consumerCfg.Broker.String(), "queue", consumerCfg.Topology.Queue)

	// Infrastructure and domain; nothing touches the network yet.
	db, err := pgdb.Open(dbCfg)
	if err != nil {
		return err
	}
	defer pgdb.Close(db)
	store := orderdb.New(db)
	c := consumer.New(consumerCfg, store, log)

	g, ctx := errgroup.WithContext(ctx)

	// Health first, so a supervisor sees the process alive while it waits
	// for its dependencies; /ready tells whether it is consuming.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		web.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		s := c.Status()
		status := http.StatusOK
		if !s.Connected {
			status = http.StatusServiceUnavailable
		}
		web.WriteJSON(w, status, map[string]any{"rabbitmq": s})
	})
	g.Go(func() error {
		return web.ListenAndServe(ctx, web.ServerConfig{Addr: fmt.Sprintf(":%d", healthPort)}, mux, log)
	})

	// Wait for the database rather than exit while it is down, then consume.
	g.Go(func() error {
		if err := pgdb.Wait(ctx, db, log); err != nil {
			return ignoreStop(ctx, err)
		}
		if err := store.Migrate(ctx); err != nil {
			return ignoreStop(ctx, err)
		}
		return c.Run(ctx)
	})

	// Wait for the signal (or the first failure); the consumer settles its
	// batch and closes its channel and connection before the database closes.
	return g.Wait()
}

func ignoreStop(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}
