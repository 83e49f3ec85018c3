package loadtest

import (
	"fmt"

	"moviestream/pkg/broker"
	"moviestream/pkg/config"
	"moviestream/pkg/pgdb"
)

// Env is what the load test reads from .env: where the gateway listens,
// and the databases and broker users it works with. Nothing is written
// down anywhere else.
type Env struct {
	GatewayURL string
	// Inventory is the inventory service's own role on movies_db: the load
	// test seeds and removes its movies as the owner of the table.
	Inventory pgdb.Config
	// Billing is billing's role on billing_db, where the orders are counted
	// and the load test's own orders removed.
	Billing pgdb.Config
	// TestDB is the test role (CREATEDB) on the maintenance database; the
	// bare consumer's scratch database is created with it.
	TestDB pgdb.Config
	// Admin publishes the drain row's backlog into billing_queue; Test may
	// only use test.* queues, where every reference runs.
	Admin, Test broker.Config
	Queue       string
}

// LoadEnv reads .env (ENV_FILE, or the file found from the working
// directory up) and returns the load test's configuration.
func LoadEnv() (Env, error) {
	if err := config.Load(); err != nil {
		return Env{}, fmt.Errorf("loadtest: %w", err)
	}
	var r config.Reader
	db := func(prefix string) pgdb.Config {
		return pgdb.Config{
			Host: r.String(prefix + "_DB_HOST"), Port: r.String(prefix + "_DB_PORT"), Name: r.String(prefix + "_DB_NAME"),
			User: r.String(prefix + "_DB_USER"), Password: r.String(prefix + "_DB_PASSWORD"),
		}
	}
	e := Env{
		GatewayURL: fmt.Sprintf("http://127.0.0.1:%d", r.Port("GATEWAY_PORT")),
		Inventory:  db("INVENTORY"),
		Billing:    db("BILLING"),
		TestDB: pgdb.Config{
			Host: r.String("TEST_DB_HOST"), Port: r.String("TEST_DB_PORT"), Name: "postgres",
			User: r.String("TEST_DB_USER"), Password: r.String("TEST_DB_PASSWORD"),
		},
		Admin: broker.ConfigFromEnv(&r, "RABBITMQ_ADMIN", "loadtest"),
		Test:  broker.ConfigFromEnv(&r, "TEST_RABBITMQ", "loadtest"),
		Queue: broker.TopologyFromEnv(&r).Queue,
	}
	if err := r.Err(); err != nil {
		return Env{}, fmt.Errorf("loadtest: %w", err)
	}
	return e, nil
}
