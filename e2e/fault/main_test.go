//go:build fault

// Package fault proves billing's promise under failure: every POST
// /api/billing answered 200 becomes exactly one row in orders, and every
// message that can never become one ends in billing_queue.dlq, while
// billing, the gateway, RabbitMQ and PostgreSQL are stopped, killed and
// restarted. Each test runs the real service binaries (built once per run)
// against a private PostgreSQL cluster and a private RabbitMQ node (or,
// in TestClusterNodeFailures, a private three-node RabbitMQ cluster) that
// it starts itself (package testinfra), never against the machine's shared
// instances or the `make up` stack.
//
// Run with `make test-fault`, or: cd e2e && go test -tags fault -v ./fault/
// (`make test-cluster` runs the cluster test alone).
package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"gorm.io/gorm"

	"moviestream/e2e/testinfra"
	"moviestream/pkg/broker"
	"moviestream/pkg/config"
	"moviestream/pkg/pgdb"
	"moviestream/pkg/testenv"
)

const (
	queue    = "billing_queue"
	dlq      = queue + ".dlq"
	vhost    = "moviestream"
	jsonType = "application/json"
)

var (
	binDir   string // the service binaries, built once in TestMain
	envFile  string // the repository's .env, which the binaries read
	repoRoot string // the repository, where a test builds an extra binary
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	envFile = os.Getenv(config.EnvFileVar)
	if envFile == "" {
		envFile = config.FindEnvFile()
	}
	if envFile == "" {
		fmt.Fprintln(os.Stderr, "fault: no .env found (set ENV_FILE)")
		return 1
	}
	envFile, _ = filepath.Abs(envFile)
	repoRoot = filepath.Dir(envFile)
	dir, err := os.MkdirTemp("", "fault-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fault:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	// FAULT_RACE=1 builds the services with the race detector (slower).
	if err := testinfra.BuildServices(filepath.Dir(envFile), dir, os.Getenv("FAULT_RACE") == "1"); err != nil {
		fmt.Fprintln(os.Stderr, "fault: build:", err)
		return 1
	}
	fmt.Printf("fault: built %v in %s\n", testinfra.Services, time.Since(start).Round(time.Millisecond))
	binDir = dir
	return m.Run()
}

// stack is one test's private world: PostgreSQL with billing's and
// inventory's databases, a RabbitMQ node with the application's vhost and
// user, and the service processes it starts.
type stack struct {
	t           *testing.T
	pg          *testinfra.Postgres
	rmq         *testinfra.RabbitMQ
	billingDB   pgdb.Config
	inventoryDB pgdb.Config
	broker      broker.Config // the administrator
	// The gateway's and billing's own users.
	gatewayBroker, billingBroker broker.Config
	orders                       *gorm.DB // billing's database, as the superuser: billing's role has only billing's sessions

	gatewayPort, inventoryPort, billingPort int

	gateway, inventory, billing *testinfra.Proc
}

// newStack starts a private PostgreSQL and RabbitMQ and provisions them as
// the scripts provision the shared ones: a database and login role per
// service, a vhost and a RabbitMQ user per client.
// newReadyStack is newStack with billing and the gateway started and
// ready (consuming and connected to RabbitMQ).
func newReadyStack(t *testing.T) *stack {
	t.Helper()
	s := newStack(t)
	s.startBilling()
	s.startGateway()
	waitStatus(t, 30*time.Second, s.billingURL("/ready"), http.StatusOK)
	waitStatus(t, 30*time.Second, s.gatewayURL("/ready"), http.StatusOK)
	return s
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{t: t}
	start := time.Now()
	s.pg = testinfra.StartPostgres(t)
	s.billingDB = s.pg.CreateDatabase(t, "billing_db", "billing_svc")
	s.inventoryDB = s.pg.CreateDatabase(t, "movies_db", "inventory_svc")
	ordersCfg := s.pg.Admin
	ordersCfg.Name = s.billingDB.Name
	s.orders = s.pg.Open(t, ordersCfg)
	s.rmq = testinfra.StartRabbitMQ(t)
	// One user per client, as scripts/provision-rabbitmq.sh creates them:
	// the tests inspect and the DLQ tool runs as the administrator.
	s.broker = s.rmq.AddUser(t, vhost, "moviestream_admin", testinfra.FullAccess)
	gatewayPerm, billingPerm := testinfra.ServicePermissions(queue)
	s.gatewayBroker = s.rmq.AddUser(t, vhost, "gateway_svc", gatewayPerm)
	s.billingBroker = s.rmq.AddUser(t, vhost, "billing_svc", billingPerm)
	// The topology exists before any service starts, as on a provisioned
	// host where billing ran first: the gateway may declare the queues but
	// not create the main one (that needs read on it, docs/security.md).
	s.declareTopology(t)
	s.gatewayPort = testenv.FreePort(t)
	s.inventoryPort = testenv.FreePort(t)
	s.billingPort = testenv.FreePort(t)
	t.Logf("private PostgreSQL on :%d and RabbitMQ %s on :%d ready in %s",
		s.pg.Port, s.rmq.Node, s.rmq.Port, time.Since(start).Round(time.Millisecond))
	return s
}

// sinceBrokerBack is how long ago the private node started listening again;
// it takes (and ignores) a duration so that a wait can be wrapped.
func (s *stack) sinceBrokerBack(time.Duration) time.Duration { return time.Since(s.rmq.Listening) }

func (s *stack) brokerEnv() map[string]string {
	return map[string]string{
		"RABBITMQ_ADDRS":            strings.Join(s.broker.Addrs, ","),
		"RABBITMQ_VHOST":            s.broker.VHost,
		"GATEWAY_RABBITMQ_USER":     s.gatewayBroker.User,
		"GATEWAY_RABBITMQ_PASSWORD": s.gatewayBroker.Password,
		"BILLING_RABBITMQ_USER":     s.billingBroker.User,
		"BILLING_RABBITMQ_PASSWORD": s.billingBroker.Password,
		"RABBITMQ_ADMIN_USER":       s.broker.User,
		"RABBITMQ_ADMIN_PASSWORD":   s.broker.Password,
		"RABBITMQ_QUEUE":            queue,
	}
}

// declareTopology declares the queue and its DLQ as the services do, as
// the administrator.
func (s *stack) declareTopology(t *testing.T) {
	t.Helper()
	ch, done := s.shortChannel(t)
	defer done()
	if err := (broker.Topology{Queue: queue}).Declare(ch); err != nil {
		t.Fatalf("declare %s: %v", queue, err)
	}
}

func (s *stack) billingEnv() map[string]string {
	env := s.brokerEnv()
	env["BILLING_HEALTH_PORT"] = strconv.Itoa(s.billingPort)
	env["BILLING_DB_HOST"] = s.billingDB.Host
	env["BILLING_DB_PORT"] = s.billingDB.Port
	env["BILLING_DB_NAME"] = s.billingDB.Name
	env["BILLING_DB_USER"] = s.billingDB.User
	env["BILLING_DB_PASSWORD"] = s.billingDB.Password
	return env
}

func (s *stack) gatewayEnv() map[string]string {
	env := s.brokerEnv()
	env["GATEWAY_PORT"] = strconv.Itoa(s.gatewayPort)
	env["GATEWAY_INVENTORY_URL"] = "http://127.0.0.1:" + strconv.Itoa(s.inventoryPort)
	// The admin (/metrics) listener too: .env's address is the shared stack's.
	env["GATEWAY_ADMIN_ADDR"] = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(s.t))
	return env
}

func (s *stack) inventoryEnv() map[string]string {
	return map[string]string{
		"INVENTORY_PORT":        strconv.Itoa(s.inventoryPort),
		"INVENTORY_DB_HOST":     s.inventoryDB.Host,
		"INVENTORY_DB_PORT":     s.inventoryDB.Port,
		"INVENTORY_DB_NAME":     s.inventoryDB.Name,
		"INVENTORY_DB_USER":     s.inventoryDB.User,
		"INVENTORY_DB_PASSWORD": s.inventoryDB.Password,
		"INVENTORY_ADMIN_ADDR":  "127.0.0.1:" + strconv.Itoa(testenv.FreePort(s.t)),
	}
}

func (s *stack) startBilling() *testinfra.Proc {
	s.t.Helper()
	s.billing = testinfra.StartService(s.t, binDir, "billing", envFile, s.billingEnv())
	return s.billing
}

func (s *stack) startGateway() *testinfra.Proc {
	s.t.Helper()
	s.gateway = testinfra.StartService(s.t, binDir, "gateway", envFile, s.gatewayEnv())
	return s.gateway
}

func (s *stack) startInventory() *testinfra.Proc {
	s.t.Helper()
	s.inventory = testinfra.StartService(s.t, binDir, "inventory", envFile, s.inventoryEnv())
	return s.inventory
}

func (s *stack) gatewayURL(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(s.gatewayPort) + path
}

func (s *stack) billingURL(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(s.billingPort) + path
}

func (s *stack) inventoryURL(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(s.inventoryPort) + path
}

// waitStatus waits until GET url answers want.
func waitStatus(t *testing.T, timeout time.Duration, url string, want int) time.Duration {
	t.Helper()
	return testenv.WaitFor(t, timeout, fmt.Sprintf("GET %s = %d", url, want), func() bool {
		return get(url).status == want
	})
}

var client = &http.Client{
	Timeout: 10 * time.Second,
	Transport: &http.Transport{
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	},
}

type reply struct {
	status int // 0: no HTTP answer (err says why)
	body   []byte
	err    error
	took   time.Duration
}

func (r reply) errCode() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

func (r reply) String() string {
	if r.err != nil {
		return "error: " + r.err.Error()
	}
	return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body))
}

func do(method, url, ctype string, body []byte, header ...string) reply {
	return doCtx(context.Background(), method, url, ctype, body, header...)
}

func doCtx(ctx context.Context, method, url, ctype string, body []byte, header ...string) reply {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return reply{err: err}
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	r, err := testenv.Send(client, req)
	return reply{status: r.Status, body: r.Body, err: err, took: time.Since(start)}
}

func get(url string) reply { return do(http.MethodGet, url, "", nil) }

// orderBody is the order a test sends for key number i; rows are checked
// against it.
func orderBody(i int) (body []byte, user string, items int, total string) {
	user = "u" + strconv.Itoa(i)
	items = 1 + i%9
	total = fmt.Sprintf("%d.%02d", i%1000, i%100)
	return []byte(fmt.Sprintf(`{"user_id":%q,"number_of_items":"%d","total_amount":"%s"}`, user, items, total)), user, items, total
}

func (s *stack) postOrder(key string, body []byte) reply {
	return do(http.MethodPost, s.gatewayURL("/api/billing"), jsonType, body, "Idempotency-Key", key)
}

// countOrders counts rows of billing's orders table matching where.
func (s *stack) countOrders(t *testing.T, where string, args ...any) int64 {
	t.Helper()
	var n int64
	s.query(t, func(db *gorm.DB) error {
		return db.Raw("SELECT count(*) FROM orders WHERE "+where, args...).Scan(&n).Error
	})
	return n
}

// tryCountOrders counts all orders for polling: -1 while the database or
// the table is not there.
func (s *stack) tryCountOrders() int64 {
	var n int64
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.orders.WithContext(ctx).Raw("SELECT count(*) FROM orders").Scan(&n).Error; err != nil {
		return -1
	}
	return n
}

// query runs fn on billing's database. A pooled connection that PostgreSQL
// closed during a restart fails its next statement once (57P01): such
// errors are retried a few times.
func (s *stack) query(t *testing.T, fn func(db *gorm.DB) error) {
	t.Helper()
	var err error
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = fn(s.orders.WithContext(ctx))
		cancel()
		if err == nil || !pgdb.IsUnavailable(err) {
			break
		}
	}
	if err != nil {
		t.Fatalf("query orders: %v", err)
	}
}

// freezeBroker freezes the private node (Freeze) and returns thaw, which
// resumes it once; a node the test leaves frozen is thawed at its cleanup.
func (s *stack) freezeBroker(t *testing.T) (thaw func()) {
	t.Helper()
	s.rmq.Freeze(t)
	var once sync.Once
	thaw = func() { once.Do(func() { s.rmq.Thaw(t) }) }
	t.Cleanup(thaw)
	return thaw
}

// amqpChannel opens a connection of the test's own to the private node.
func (s *stack) amqpChannel(t *testing.T) *amqp.Channel {
	t.Helper()
	ch, done := s.shortChannel(t)
	t.Cleanup(done)
	return ch
}

// publish sends msgs straight to the queue (as a person would from the
// management UI) and waits for the broker's confirms.
func (s *stack) publish(t *testing.T, msgs ...amqp.Publishing) {
	t.Helper()
	ch := s.amqpChannel(t)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var dcs []*amqp.DeferredConfirmation
	for _, m := range msgs {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, m)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		dcs = append(dcs, dc)
	}
	for _, dc := range dcs {
		if ok, err := dc.WaitContext(ctx); !ok || err != nil {
			t.Fatalf("publish not confirmed: %v %v", ok, err)
		}
	}
}

// ready returns how many messages wait in the main queue and in the DLQ,
// not counting those delivered to a consumer and not yet acknowledged. It
// asks the queues themselves (a passive declare), which is exact at once;
// rabbitmqctl's counts for quorum queues lag by seconds. With billing
// stopped, ready is everything a queue holds.
func (s *stack) ready(t *testing.T) (main, dead int) {
	t.Helper()
	ch, done := s.shortChannel(t)
	defer done()
	for _, q := range []struct {
		name string
		n    *int
	}{{queue, &main}, {dlq, &dead}} {
		st, err := ch.QueueDeclarePassive(q.name, true, false, false, false, nil)
		if err != nil {
			t.Fatalf("inspect %s: %v", q.name, err)
		}
		*q.n = st.Messages
	}
	return main, dead
}

// shortChannel opens a channel on a connection of its own; done closes
// the connection.
func (s *stack) shortChannel(t *testing.T) (ch *amqp.Channel, done func()) {
	t.Helper()
	conn, err := broker.Dial(s.broker)
	if err != nil {
		t.Fatalf("dial %s: %v", s.broker, err)
	}
	ch, err = conn.Channel()
	if err != nil {
		_ = conn.Close()
		t.Fatalf("channel: %v", err)
	}
	return ch, func() { _ = conn.Close() }
}

// billingCreatesTopology starts billing once and stops it: billing creates
// the table and the queues, which then wait for messages with no consumer.
func (s *stack) billingCreatesTopology(t *testing.T) {
	t.Helper()
	s.startBilling()
	waitStatus(t, 30*time.Second, s.billingURL("/ready"), http.StatusOK)
	if code, _ := s.billing.Stop(t, syscall.SIGINT, 30*time.Second); code != 0 {
		t.Fatalf("billing exit code %d after SIGINT, want 0", code)
	}
}
