//go:build e2e

package e2e

import (
	"net"
	"os"
	"strconv"
	"testing"

	"moviestream/e2e/testinfra"
)

// TestListenOnlyWhereNeeded: after `make up` the gateway's public port is
// the one socket of the stack on every interface; RabbitMQ (AMQP,
// management, prometheus plugin, Erlang distribution), PostgreSQL,
// inventory, billing's health port and the admin listeners are on
// loopback only (docs/security.md). The sockets come from the kernel (ss).
func TestListenOnlyWhereNeeded(t *testing.T) {
	ls, err := testinfra.Listeners("")
	if err != nil {
		t.Fatal(err)
	}
	port := func(key string) int {
		t.Helper()
		n, err := strconv.Atoi(os.Getenv(key))
		if err != nil {
			t.Fatalf("%s=%q: %v", key, os.Getenv(key), err)
		}
		return n
	}
	addrPort := func(key string) int {
		t.Helper()
		_, p, err := net.SplitHostPort(os.Getenv(key))
		n, perr := strconv.Atoi(p)
		if err != nil || perr != nil {
			t.Fatalf("%s=%q: not host:port", key, os.Getenv(key))
		}
		return n
	}
	loopback := []struct {
		name string
		port int
	}{
		{"RabbitMQ AMQP (RABBITMQ_PORT)", port("RABBITMQ_PORT")},
		{"RabbitMQ management (RABBITMQ_MANAGEMENT_PORT)", port("RABBITMQ_MANAGEMENT_PORT")},
		{"RabbitMQ prometheus plugin (RABBITMQ_PROMETHEUS_PORT)", port("RABBITMQ_PROMETHEUS_PORT")},
		{"RabbitMQ Erlang distribution (RABBITMQ_PORT+20000)", port("RABBITMQ_PORT") + 20000},
		{"PostgreSQL (BILLING_DB_PORT)", port("BILLING_DB_PORT")},
		{"PostgreSQL (INVENTORY_DB_PORT)", port("INVENTORY_DB_PORT")},
		{"inventory (INVENTORY_PORT)", port("INVENTORY_PORT")},
		{"billing health (BILLING_HEALTH_PORT)", port("BILLING_HEALTH_PORT")},
		{"gateway admin (GATEWAY_ADMIN_ADDR)", addrPort("GATEWAY_ADMIN_ADDR")},
		{"inventory admin (INVENTORY_ADMIN_ADDR)", addrPort("INVENTORY_ADMIN_ADDR")},
		{"Prometheus (PROMETHEUS_PORT)", port("PROMETHEUS_PORT")},
	}
	for _, c := range loopback {
		t.Run(c.name+" on loopback only", func(t *testing.T) {
			on := testinfra.OnPort(ls, c.port)
			if len(on) == 0 {
				t.Fatalf("nothing listens on port %d", c.port)
			}
			for _, l := range on {
				if !l.Loopback() {
					t.Errorf("listener %s is not on loopback", l)
				}
			}
		})
	}
	t.Run("gateway (GATEWAY_PORT) on all interfaces", func(t *testing.T) {
		on := testinfra.OnPort(ls, port("GATEWAY_PORT"))
		if len(on) != 1 || !on[0].AllInterfaces() {
			t.Fatalf("listeners on GATEWAY_PORT: %v, want one on all interfaces", on)
		}
	})
}
