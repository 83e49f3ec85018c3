// Command billing consumes billing_queue and writes one order per message
// into PostgreSQL, acknowledging each message only after its commit.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sync/errgroup"

	"moviestream/pkg/broker"
	"moviestream/pkg/config"
	"moviestream/pkg/lifecycle"
	"moviestream/pkg/pgdb"
	"moviestream/pkg/web"
	"moviestream/services/billing/internal/consumer"
	"moviestream/services/billing/internal/orderdb"
)

func main() {
	os.Exit(lifecycle.Run("billing", run))
}

func run(ctx context.Context, log *slog.Logger) error {
	// Configuration (lifecycle.Run loaded .env).
	var env config.Reader
	instance := instanceNumber(&env)
	healthPort := env.Port("BILLING_HEALTH_PORT") + instance
	healthBind := env.Hosts("BILLING_HEALTH_BIND")
	dbCfg := pgdb.ConfigFromEnv(&env, "BILLING")
	consumerCfg := consumerConfig(&env)
	consumerCfg.Broker.Name = fmt.Sprintf("billing-%d", instance)
	if err := env.Err(); err != nil {
		return err
	}
	log.Info("starting", "instance", instance, "health_port", healthPort, "health_bind", healthBind, "database", dbCfg.String(),
		"broker", consumerCfg.Broker.String(), "queue", consumerCfg.Topology.Queue)

	// Infrastructure and domain; nothing touches the network yet.
	db, err := pgdb.Open(dbCfg)
	if err != nil {
		return err
	}
	defer pgdb.Close(db)
	store := orderdb.New(db)
	reg := web.NewRegistry()
	if err := pgdb.RegisterStats(reg, db, dbCfg.Name); err != nil {
		return err
	}
	consumerCfg.Metrics = consumer.NewMetrics(reg)
	c := consumer.New(consumerCfg, store, log)
	meta := web.NewMetadata("billing", "moviestream's billing: consumes billing_queue and writes one order per message into PostgreSQL", "none")

	g, ctx := errgroup.WithContext(ctx)

	// Health first, so a supervisor sees the process alive while it waits
	// for its dependencies; /ready tells whether it is consuming. The same
	// port serves /metrics and /metadata.
	g.Go(func() error {
		addrs := web.HostPorts(healthBind, healthPort)
		return web.ListenAndServe(ctx, web.ServerConfig{Addrs: addrs}, web.AdminMux(c.Readiness, reg, meta), log)
	})

	// Wait for the database rather than exit while it is down, then consume.
	g.Go(func() error {
		if err := pgdb.Wait(ctx, db, log); err != nil {
			return lifecycle.IgnoreStop(ctx, err)
		}
		if err := store.Migrate(ctx, log); err != nil {
			return lifecycle.IgnoreStop(ctx, err)
		}
		return c.Run(ctx)
	})

	// Wait for the signal (or the first failure); the consumer settles its
	// batch and closes its channel and connection before the database closes.
	return g.Wait()
}

// instanceNumber is this process's number among the billing processes of
// its host: PM2 runs BILLING_INSTANCES of them and gives each its number in
// BILLING_INSTANCE (ecosystem.config.js), 0 when unset. Each serves health
// and metrics on BILLING_HEALTH_PORT plus its number, so they can share a
// host; they share the queue, and dedupe keeps one row per order.
func instanceNumber(env *config.Reader) int {
	if env.Optional("BILLING_INSTANCE", "") == "" {
		return 0
	}
	return env.IntRange("BILLING_INSTANCE", 0, maxInstances-1)
}

// maxInstances bounds BILLING_INSTANCES: the ports BILLING_HEALTH_PORT and
// the ones after it must stay free for billing.
const maxInstances = 16

// consumerConfig reads the consumer's settings. The prefetch count is a
// 16-bit AMQP field: a larger value would wrap (65536 into 0, "unlimited"),
// so it is refused here; a batch larger than the prefetch could never fill.
func consumerConfig(env *config.Reader) consumer.Config {
	cfg := consumer.Config{
		Broker:    broker.ConfigFromEnv(env, "BILLING_RABBITMQ", "billing"),
		Topology:  broker.TopologyFromEnv(env),
		Prefetch:  env.IntRange("BILLING_PREFETCH", 1, 65535),
		BatchSize: env.IntRange("BILLING_BATCH_SIZE", 1, 65535),
	}
	if cfg.Prefetch > 0 && cfg.BatchSize > cfg.Prefetch {
		env.Invalid("BILLING_BATCH_SIZE=%d is above BILLING_PREFETCH=%d: a batch could never fill", cfg.BatchSize, cfg.Prefetch)
	}
	return cfg
}
