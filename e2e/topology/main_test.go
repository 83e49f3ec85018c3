//go:build topology

// Package topology checks the three-VM topology that scripts/test-topology.sh
// rebuilds in network namespaces (gateway-vm, inventory-vm, billing-vm).
// From the host, against the gateway's VM address, the user's walkthrough:
// movie CRUD; POST /api/billing becomes one row in billing's database; with
// `pm2 stop billing_app` (billing-vm's PM2) a POST is still 200 and the
// message waits in the queue, without a row; after `pm2 start` the row
// appears; a message published through the management HTTP API (what the UI
// does) becomes a row. Then the isolation: both PostgreSQL servers refuse
// TCP from the other hosts and on their own VM address; on RabbitMQ guest is
// deleted, the gateway's user logs in from gateway-vm but cannot consume
// billing_queue, billing's user cannot consume the DLQ, the administrator
// logs in to the management API; in each namespace the service runs as the
// system user moviestream; every listening socket of a
// namespace is on loopback or its own address (the gateway's public port
// and epmd excepted) and gateway-vm cannot reach what billing-vm keeps to
// itself (docs/security.md); no .env secret is in an override file or a
// PM2 dump.
//
// The script starts the servers and runs the role scripts in the
// namespaces, compiles this test (`go test -c -tags topology`), runs it on
// the host with the TOPOLOGY_* variables and prints the summary line from
// the counts the test leaves in $TOPOLOGY_RESULT_FILE. A login that must be
// tried from inside a namespace (SQL, AMQP) the test binary makes by running
// itself there as a probe (probe_test.go). Every check is one subtest, so
// each one can fail alone.
//
// It cannot run on its own: run `make test-topology` (root).
package topology

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"

	"moviestream/pkg/broker"
	"moviestream/pkg/config"
	"moviestream/pkg/pgdb"
)

// settings are the addresses and credentials of the topology: .env's, as
// the roles use them on the VMs, and the TOPOLOGY_* variables of the script.
type settings struct {
	gatewayIP, inventoryIP, billingIP string
	gatewayURL, managementURL         string
	// Each database as its service reaches it: its own VM's loopback.
	inventoryDB, billingDB pgdb.Config
	// The gateway's user at billing-vm's address, as the gateway uses it;
	// billing's user and the administrator at the same address.
	broker, billingBroker, adminBroker broker.Config
	queue                              string

	gatewayNS, inventoryNS, billingNS string

	// Ports whose listeners and reachability checkListeners checks.
	gatewayPort, billingHealthPort, rabbitPort, managementPort           int
	rabbitPromPort, prometheusPort, gatewayAdminPort, inventoryAdminPort int

	pm2Dir     string // one PM2_HOME per namespace: pm2Dir/<namespace>
	hostEnvDir string // one override directory per namespace, likewise
	resultFile string // "passed failed", for the script's summary line
	// .env's secrets: key -> value, which no override file or PM2 dump
	// may contain.
	secrets map[string]string
}

var (
	cfg   settings
	tally struct{ passed, failed int }
)

func TestMain(m *testing.M) {
	if req := os.Getenv(probeVar); req != "" {
		os.Exit(runProbe(req))
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if err := config.Load(); err != nil {
		fmt.Fprintln(os.Stderr, "topology:", err)
		return 1
	}
	s, err := load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "topology: run by scripts/test-topology.sh (make test-topology):", err)
		return 1
	}
	cfg = s
	code := m.Run()
	result := fmt.Sprintf("%d %d\n", tally.passed, tally.failed)
	if err := os.WriteFile(cfg.resultFile, []byte(result), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "topology:", err)
		return 1
	}
	return code
}

func load() (settings, error) {
	var r config.Reader
	s := settings{
		gatewayIP:     r.String("GATEWAY_VM_IP"),
		inventoryIP:   r.String("INVENTORY_VM_IP"),
		billingIP:     r.String("BILLING_VM_IP"),
		inventoryDB:   pgdb.ConfigFromEnv(&r, "INVENTORY"),
		billingDB:     pgdb.ConfigFromEnv(&r, "BILLING"),
		broker:        broker.ConfigFromEnv(&r, "GATEWAY_RABBITMQ", "topology-test"),
		billingBroker: broker.ConfigFromEnv(&r, "BILLING_RABBITMQ", "topology-test"),
		adminBroker:   broker.ConfigFromEnv(&r, "RABBITMQ_ADMIN", "topology-test"),
		queue:         broker.TopologyFromEnv(&r).Queue,
		gatewayNS:     r.String("TOPOLOGY_GATEWAY_NS"),
		inventoryNS:   r.String("TOPOLOGY_INVENTORY_NS"),
		billingNS:     r.String("TOPOLOGY_BILLING_NS"),
		pm2Dir:        r.String("TOPOLOGY_PM2_DIR"),
		hostEnvDir:    r.String("TOPOLOGY_HOST_ENV_DIR"),
		resultFile:    r.String("TOPOLOGY_RESULT_FILE"),
	}
	s.gatewayPort, s.billingHealthPort = r.Port("GATEWAY_PORT"), r.Port("BILLING_HEALTH_PORT")
	s.rabbitPort, s.managementPort = r.Port("RABBITMQ_PORT"), r.Port("RABBITMQ_MANAGEMENT_PORT")
	s.rabbitPromPort, s.prometheusPort = r.Port("RABBITMQ_PROMETHEUS_PORT"), r.Port("PROMETHEUS_PORT")
	s.gatewayAdminPort, s.inventoryAdminPort = addrPort(&r, "GATEWAY_ADMIN_ADDR"), addrPort(&r, "INVENTORY_ADMIN_ADDR")
	s.inventoryDB.Host, s.billingDB.Host = "127.0.0.1", "127.0.0.1"
	billingNode := []string{net.JoinHostPort(s.billingIP, strconv.Itoa(s.rabbitPort))}
	s.broker.Addrs, s.billingBroker.Addrs, s.adminBroker.Addrs = billingNode, billingNode, billingNode
	s.inventoryDB.MaxOpenConns, s.billingDB.MaxOpenConns = 1, 1
	s.gatewayURL = "http://" + net.JoinHostPort(s.gatewayIP, r.String("GATEWAY_PORT"))
	s.managementURL = "http://" + net.JoinHostPort(s.billingIP, r.String("RABBITMQ_MANAGEMENT_PORT"))
	s.secrets = map[string]string{
		"INVENTORY_DB_PASSWORD":     s.inventoryDB.Password,
		"BILLING_DB_PASSWORD":       s.billingDB.Password,
		"GATEWAY_RABBITMQ_PASSWORD": s.broker.Password,
		"BILLING_RABBITMQ_PASSWORD": s.billingBroker.Password,
		"RABBITMQ_ADMIN_PASSWORD":   s.adminBroker.Password,
	}
	return s, r.Err()
}

// addrPort is the port of the host:port in key (.env's value: the role
// scripts keep the port and change the addresses).
func addrPort(r *config.Reader, key string) int {
	v := r.String(key)
	_, p, err := net.SplitHostPort(v)
	n, perr := strconv.Atoi(p)
	if v != "" && (err != nil || perr != nil) {
		r.Invalid("%s=%q: not host:port", key, v)
	}
	return n
}

// check runs one check as a subtest and counts it for the summary line.
func check(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if t.Run(name, f) {
		tally.passed++
	} else {
		tally.failed++
	}
}
