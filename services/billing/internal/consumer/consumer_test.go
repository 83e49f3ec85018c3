package consumer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"gorm.io/gorm"

	"moviestream/pkg/broker"
	"moviestream/pkg/broker/brokertest"
	"moviestream/pkg/pgdb"
	"moviestream/pkg/pgdb/pgtest"
	"moviestream/pkg/testenv"
	"moviestream/services/billing/internal/consumer"
	"moviestream/services/billing/internal/order"
	"moviestream/services/billing/internal/orderdb"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type rig struct {
	cfg   broker.Config
	topo  broker.Topology
	dbCfg pgdb.Config
	db    *gorm.DB
	ch    *amqp.Channel
}

// newRig gives a test its own database (migrated) and its own queue
// (declared), both real.
func newRig(tb testing.TB) *rig {
	tb.Helper()
	cfg := brokertest.Config(tb)
	topo, ch := brokertest.Declared(tb, cfg)
	dbCfg := pgtest.NewDatabase(tb)
	db := openDB(tb, dbCfg)
	if err := orderdb.New(db).Migrate(context.Background(), nil); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return &rig{cfg: cfg, topo: topo, dbCfg: dbCfg, db: db, ch: ch}
}

func openDB(tb testing.TB, cfg pgdb.Config) *gorm.DB {
	tb.Helper()
	db, err := pgdb.Open(cfg)
	if err != nil {
		tb.Fatalf("open %s: %v", cfg, err)
	}
	tb.Cleanup(func() { _ = pgdb.Close(db) }) // before the database is dropped
	return db
}

// start runs a consumer over store until the returned stop is called (or
// the test ends) and waits until it is subscribed.
func (r *rig) start(tb testing.TB, store order.Store) (stop func()) {
	tb.Helper()
	_, stop = r.run(tb, store, consumer.Config{}, quiet)
	return stop
}

// run is start with a write timeout and a logger of the test's choosing,
// returning the consumer too.
func (r *rig) run(tb testing.TB, store order.Store, cfg consumer.Config, log *slog.Logger) (c *consumer.Consumer, stop func()) {
	tb.Helper()
	c, stop = r.launch(tb, store, cfg, log)
	testenv.WaitFor(tb, 10*time.Second, "consumer subscribed", func() bool { return c.Status().Connected })
	return c, stop
}

// launch is run without waiting for the subscription. A zero prefetch or
// batch size in cfg takes the tests' 500 and 250.
func (r *rig) launch(tb testing.TB, store order.Store, cfg consumer.Config, log *slog.Logger) (c *consumer.Consumer, stop func()) {
	tb.Helper()
	cfg.Broker, cfg.Topology = r.cfg, r.topo
	if cfg.Prefetch == 0 {
		cfg.Prefetch = 500
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 250
	}
	c = consumer.New(cfg, store, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	tb.Cleanup(stop)
	return c, stop
}

func (r *rig) count(tb testing.TB, where string) int64 {
	tb.Helper()
	var n int64
	if err := r.db.Raw("SELECT count(*) FROM orders WHERE " + where).Scan(&n).Error; err != nil {
		tb.Fatalf("count: %v", err)
	}
	return n
}

func msg(id, body string) amqp.Publishing {
	return amqp.Publishing{MessageId: id, ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: []byte(body)}
}

const valid = `{"user_id":"3","number_of_items":"5","total_amount":"180"}`

// TestMessagesBecomeOneOrderEach: every message is written once, however
// often its message_id arrives, and acked only then.
func TestMessagesBecomeOneOrderEach(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msgs []amqp.Publishing
		want map[string]int64 // rows matching each WHERE clause once all are handled
	}{
		{
			name: "acked after commit",
			msgs: []amqp.Publishing{
				msg("m-1", valid),
				msg("m-2", `{"user_id":42,"number_of_items":1,"total_amount":0.99}`),
				msg("", `{"user_id":"by-hand","number_of_items":"2","total_amount":"10.5"}`), // management UI style: no id
			},
			want: map[string]int64{
				"true": 3,
				"message_id = 'm-1' AND user_id = '3' AND number_of_items = 5 AND total_amount = 180.00": 1,
				"message_id IS NULL AND total_amount = 10.50":                                            1,
			},
		},
		{
			name: "redelivered message id writes one order",
			msgs: []amqp.Publishing{msg("same", valid), msg("same", valid), msg("other", valid)},
			want: map[string]int64{"true": 2, "message_id = 'same'": 1, "message_id = 'other'": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			stop := r.start(t, orderdb.New(r.db))
			brokertest.Publish(t, r.cfg, r.topo.Queue, tt.msgs...)
			counts := func() map[string]int64 {
				got := make(map[string]int64, len(tt.want))
				for where := range tt.want {
					got[where] = r.count(t, where)
				}
				return got
			}
			testenv.WaitFor(t, 10*time.Second, "orders written", func() bool { return maps.Equal(counts(), tt.want) })
			stop()
			// Acked, not just delivered: after the consumer is gone nothing
			// returns, duplicates included.
			if n := brokertest.Depth(t, r.ch, r.topo.Queue); n != 0 {
				t.Fatalf("queue holds %d messages after processing, want 0 (unacked?)", n)
			}
			if got := counts(); !maps.Equal(got, tt.want) {
				t.Errorf("rows after stop = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPoisonMessagesAreDeadLetteredWithReason(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	stop := r.start(t, orderdb.New(r.db))

	poison := map[string]string{
		"malformed":      `{"user_id":"3",`,
		"not-json":       "\x00\x01binary\xff",
		"empty":          ``,
		"wrong-types":    `{"user_id":true,"number_of_items":[1],"total_amount":{}}`,
		"negative":       `{"user_id":"3","number_of_items":"5","total_amount":"-180"}`,
		"decimals":       `{"user_id":"3","number_of_items":"5","total_amount":"1.999"}`,
		"zero-items":     `{"user_id":"3","number_of_items":0,"total_amount":"1"}`,
		"oversized-body": `{"user_id":"3","number_of_items":1,"total_amount":1,"pad":"` + strings.Repeat("x", 70_000) + `"}`,
		"json-null":      `null`,
		"json-array":     `[{"user_id":"3","number_of_items":1,"total_amount":1}]`,
		"fraction-items": `{"user_id":"3","number_of_items":1.5,"total_amount":"1"}`,
		"missing-user":   `{"number_of_items":1,"total_amount":"1"}`,
		"bad-utf8-user":  "{\"user_id\":\"\xff\xfe\",\"number_of_items\":1,\"total_amount\":1}",
		"too-large-sum":  `{"user_id":"3","number_of_items":1,"total_amount":"10000000000.00"}`,
		"bad-id\x00":     valid, // a valid body under a message_id PostgreSQL cannot store
	}
	// Every bad message sits between two valid ones, so a batch mixes both.
	var msgs []amqp.Publishing
	msgs = append(msgs, msg("good-0", valid))
	good := 1
	for id, body := range poison {
		msgs = append(msgs, msg(id, body), msg(fmt.Sprintf("good-%d", good), valid))
		good++
	}
	brokertest.Publish(t, r.cfg, r.topo.Queue, msgs...)

	testenv.WaitFor(t, 10*time.Second, "dead letters", func() bool {
		return brokertest.Depth(t, r.ch, r.topo.DeadLetterQueue()) == len(poison)
	})
	testenv.WaitFor(t, 10*time.Second, "valid orders", func() bool { return r.count(t, "true") == int64(good) })
	stop()
	if n := brokertest.Depth(t, r.ch, r.topo.Queue); n != 0 {
		t.Fatalf("main queue holds %d after stop, want 0", n)
	}
	if n := r.count(t, "message_id LIKE 'good-%'"); n != int64(good) {
		t.Fatalf("valid orders stored = %d, want %d", n, good)
	}
	seen := map[string]bool{}
	for range poison {
		d := brokertest.Get(t, r.ch, r.topo.DeadLetterQueue(), 5*time.Second)
		reason, _ := d.Headers[consumer.HeaderReason].(string)
		if reason == "" {
			t.Errorf("dead letter %q has no %s header", d.MessageId, consumer.HeaderReason)
		}
		if q, _ := d.Headers[consumer.HeaderOriginalQueue].(string); q != r.topo.Queue {
			t.Errorf("dead letter %q: original queue %q", d.MessageId, q)
		}
		if body, ok := poison[d.MessageId]; !ok || string(d.Body) != body {
			t.Errorf("dead letter %q: body not preserved", d.MessageId)
		}
		seen[d.MessageId] = true
	}
	if len(seen) != len(poison) {
		t.Errorf("dead-lettered %d distinct messages, want %d", len(seen), len(poison))
	}
}

func TestBacklogIsProcessedAtStart(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const n = 2000
	msgs := make([]amqp.Publishing, n)
	for i := range msgs {
		msgs[i] = msg(fmt.Sprintf("backlog-%d", i), valid)
	}
	brokertest.Publish(t, r.cfg, r.topo.Queue, msgs...) // while billing is "stopped"
	if d := brokertest.Depth(t, r.ch, r.topo.Queue); d != n {
		t.Fatalf("queue holds %d before start, want %d", d, n)
	}
	stop := r.start(t, orderdb.New(r.db))
	testenv.WaitFor(t, 30*time.Second, "backlog written", func() bool { return r.count(t, "true") == n })
	stop()
	if d := brokertest.Depth(t, r.ch, r.topo.Queue); d != 0 {
		t.Fatalf("queue holds %d after processing, want 0", d)
	}
}

// TestDatabaseDownAtStartTakesNothing: while the database refuses writes,
// billing takes nothing from the queue, so however often it is restarted
// (a crash loop under PM2), no message is handed out and returned, and
// none spends a delivery; /ready reports the hold meanwhile.
func TestDatabaseDownAtStartTakesNothing(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	down, err := pgdb.Open(pgtest.UnreachableConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pgdb.Close(down)
	brokertest.Publish(t, r.cfg, r.topo.Queue, msg("a", valid), msg("b", valid), msg("c", valid))

	for restart := range 3 {
		c, stop := r.launch(t, orderdb.New(down), consumer.Config{}, quiet)
		testenv.WaitFor(t, 10*time.Second, "the hold reported", func() bool { return readyOf(t, c).Database.Attempts >= 2 })
		if got := readyOf(t, c); got.Ready || got.RabbitMQ.Connected || got.Database.Writable {
			t.Errorf("start %d: readiness %+v, want not ready, not consuming, not writable", restart, got)
		}
		stop()
		if n := brokertest.Depth(t, r.ch, r.topo.Queue); n != 3 {
			t.Fatalf("start %d: %d messages ready, want all 3 (none taken)", restart, n)
		}
	}
	if n := brokertest.Depth(t, r.ch, r.topo.DeadLetterQueue()); n != 0 {
		t.Fatalf("%d messages dead-lettered during a database outage, want 0", n)
	}
	d := brokertest.Get(t, r.ch, r.topo.Queue, 5*time.Second)
	if d.Redelivered {
		t.Errorf("message %q was handed out before: the restarts spent its deliveries", d.MessageId)
	}
}

// stuckStore fails every write that holds message stuckID as if the
// database were down, and passes the others to the real store: the database
// "comes back" for the next batch while the first is still held.
type stuckStore struct {
	order.Store
	stuckID  string
	attempts atomic.Int64
}

func (s *stuckStore) Save(ctx context.Context, orders []order.Order) (order.Saved, error) {
	for _, o := range orders {
		if o.MessageID == s.stuckID {
			s.attempts.Add(1)
			return order.Saved{}, fmt.Errorf("fake outage: %w", order.ErrUnavailable)
		}
	}
	return s.Store.Save(ctx, orders)
}

// A batch left unacked at stop must stay unacked even when the batch after
// it commits: that batch's single multiple-ack must not settle it too.
func TestStopWithHeldBatchDoesNotAckItWithTheNextBatch(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	store := &stuckStore{Store: orderdb.New(r.db), stuckID: "stuck"}
	stop := r.start(t, store)

	brokertest.Publish(t, r.cfg, r.topo.Queue, msg("stuck", valid))
	testenv.WaitFor(t, 10*time.Second, "first write attempt", func() bool { return store.attempts.Load() >= 1 })
	// The next message arrives while the first batch is retried; it is
	// collected into the following batch.
	brokertest.Publish(t, r.cfg, r.topo.Queue, msg("next", valid))
	testenv.WaitFor(t, 10*time.Second, "next delivered", func() bool { return brokertest.Depth(t, r.ch, r.topo.Queue) == 0 })
	seen := store.attempts.Load()
	testenv.WaitFor(t, 10*time.Second, "two more retries", func() bool { return store.attempts.Load() >= seen+2 })
	stop()

	// "stuck" was never committed: it must be back in the queue, not acked.
	testenv.WaitFor(t, 10*time.Second, "uncommitted message back in the queue", func() bool {
		return brokertest.Depth(t, r.ch, r.topo.Queue)+int(r.count(t, "message_id = 'next'")) == 2
	})
	if n := r.count(t, "message_id = 'stuck'"); n != 0 {
		t.Fatalf("stuck message stored %d times, want 0", n)
	}
	if n := brokertest.Depth(t, r.ch, r.topo.DeadLetterQueue()); n != 0 {
		t.Fatalf("%d messages dead-lettered, want 0", n)
	}
}

// readiness is what billing's /ready serves, decoded strictly so that a
// change of shape fails the test.
type readiness struct {
	Ready    bool                 `json:"-"`
	RabbitMQ broker.Status        `json:"rabbitmq"`
	Database consumer.WriteStatus `json:"database"`
}

func readyOf(tb testing.TB, c *consumer.Consumer) readiness {
	tb.Helper()
	ok, body := c.Readiness()
	b, err := json.Marshal(body)
	if err != nil {
		tb.Fatalf("marshal readiness: %v", err)
	}
	var r readiness
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		tb.Fatalf("readiness body %s: %v", b, err)
	}
	r.Ready = ok
	return r
}

func mustExec(tb testing.TB, db *gorm.DB, query string) {
	tb.Helper()
	if err := db.Exec(query).Error; err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
}

// lockOrders holds a SHARE lock on orders in an open transaction: reads go
// on, inserts wait. release (also run in Cleanup) rolls it back.
func lockOrders(tb testing.TB, db *gorm.DB) (release func()) {
	tb.Helper()
	tx := db.Begin()
	if tx.Error != nil {
		tb.Fatalf("begin: %v", tx.Error)
	}
	if err := tx.Exec("LOCK TABLE orders IN SHARE MODE").Error; err != nil {
		tb.Fatalf("lock orders: %v", err)
	}
	var once sync.Once
	release = func() { once.Do(func() { tx.Rollback() }) }
	tb.Cleanup(release)
	return release
}

// faultDB is what a fault is injected with: the owner's connection to the
// test database, a connection to the maintenance database (for ALTER
// DATABASE), and the test database's name.
type faultDB struct {
	owner, admin *gorm.DB
	name         string
}

func (f faultDB) alterDatabase(tb testing.TB, set string) {
	tb.Helper()
	mustExec(tb, f.admin, fmt.Sprintf(`ALTER DATABASE %q %s`, f.name, set))
}

// writeFaults make PostgreSQL refuse billing's writes while it stays up and
// reachable. None is the orders' fault. Each inject returns the clear
// function. Session defaults set with ALTER DATABASE reach the consumer
// because its pool keeps no idle connection: every statement runs on a
// new session.
var writeFaults = []struct {
	name         string
	sqlstates    []string      // what /ready may report while writes are held
	writeTimeout time.Duration // the consumer's; 0 for its default (30s)
	inject       func(tb testing.TB, f faultDB) (clear func())
}{
	{
		name:      "insert privilege revoked",
		sqlstates: []string{"42501"},
		inject: func(tb testing.TB, f faultDB) func() {
			mustExec(tb, f.owner, "REVOKE INSERT ON orders FROM CURRENT_USER")
			return func() { mustExec(tb, f.owner, "GRANT INSERT ON orders TO CURRENT_USER") }
		},
	},
	{
		name:      "database read-only",
		sqlstates: []string{"25006"},
		inject: func(tb testing.TB, f faultDB) func() {
			f.alterDatabase(tb, "SET default_transaction_read_only = on")
			return func() { f.alterDatabase(tb, "RESET default_transaction_read_only") }
		},
	},
	{
		name:      "table missing",
		sqlstates: []string{"42P01"},
		inject: func(tb testing.TB, f faultDB) func() {
			mustExec(tb, f.owner, "ALTER TABLE orders RENAME TO orders_elsewhere")
			return func() { mustExec(tb, f.owner, "ALTER TABLE orders_elsewhere RENAME TO orders") }
		},
	},
	{
		name:      "statement timeout on a locked table",
		sqlstates: []string{"57014"},
		inject: func(tb testing.TB, f faultDB) func() {
			f.alterDatabase(tb, "SET statement_timeout = '100ms'")
			release := lockOrders(tb, f.owner)
			return func() { release(); f.alterDatabase(tb, "RESET statement_timeout") }
		},
	},
	{
		name:      "lock timeout on a locked table",
		sqlstates: []string{"55P03"},
		inject: func(tb testing.TB, f faultDB) func() {
			f.alterDatabase(tb, "SET lock_timeout = '100ms'")
			release := lockOrders(tb, f.owner)
			return func() { release(); f.alterDatabase(tb, "RESET lock_timeout") }
		},
	},
	{
		// No timeout in the database: billing's own WriteTimeout cuts the
		// wait; the server then cancels the statement itself (57014) or
		// the client gives up first (no SQLSTATE).
		name:         "table locked without a timeout",
		sqlstates:    []string{"57014", ""},
		writeTimeout: 300 * time.Millisecond,
		inject: func(tb testing.TB, f faultDB) func() {
			return lockOrders(tb, f.owner)
		},
	},
}

// TestWritesRefusedByTheDatabaseAreHeldUntilItTakesThem: whatever the
// reason the database refuses a write that is not the order's fault,
// billing holds the batch unacked (nothing dead-lettered, nothing
// requeued), reports the hold on /ready with the SQLSTATE and since when,
// logs it once however many attempts it makes, and writes every order
// exactly once when the fault clears.
func TestWritesRefusedByTheDatabaseAreHeldUntilItTakesThem(t *testing.T) {
	t.Parallel()
	for _, tt := range writeFaults {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			f := faultDB{owner: r.db, admin: openDB(t, pgtest.AdminConfig(t)), name: r.dbCfg.Name}
			pool := openDB(t, r.dbCfg)
			sqlDB, err := pool.DB()
			if err != nil {
				t.Fatal(err)
			}
			sqlDB.SetMaxIdleConns(0) // every statement on a new session: ALTER DATABASE reaches it
			logs := &testenv.LogBuffer{}
			log := slog.New(slog.NewTextHandler(logs, nil)) // info and above, as in production
			c, stop := r.run(t, orderdb.New(pool), consumer.Config{WriteTimeout: tt.writeTimeout}, log)
			if got := readyOf(t, c); !got.Ready || !got.Database.Writable {
				t.Fatalf("readiness before the fault = %+v, want ready and writable", got)
			}

			clear := tt.inject(t, f)
			start := time.Now()
			const n = 20
			ids := make([]string, n)
			msgs := make([]amqp.Publishing, n)
			for i := range msgs {
				ids[i] = fmt.Sprintf("held-%d", i)
				msgs[i] = msg(ids[i], valid)
			}
			brokertest.Publish(t, r.cfg, r.topo.Queue, msgs...)

			// Many attempts, so that a log line per attempt would show.
			testenv.WaitFor(t, 30*time.Second, "writes held through 6 attempts", func() bool {
				return readyOf(t, c).Database.Attempts >= 6
			})
			got := readyOf(t, c)
			db := got.Database
			if got.Ready || db.Writable || !slices.Contains(tt.sqlstates, db.SQLState) || db.Error == "" ||
				db.Since.Before(start) || db.Since.After(time.Now()) || !got.RabbitMQ.Connected {
				t.Errorf("readiness while held = %+v, want not ready, connected, not writable, sqlstate in %q, an error, since after %s",
					got, tt.sqlstates, start.UTC().Format(time.RFC3339Nano))
			}
			if d := brokertest.Depth(t, r.ch, r.topo.DeadLetterQueue()); d != 0 {
				t.Fatalf("%d messages dead-lettered while the database refused writes, want 0", d)
			}
			if d := brokertest.Depth(t, r.ch, r.topo.Queue); d != 0 {
				t.Errorf("%d messages ready in the queue while held, want 0 (all held by billing, none requeued)", d)
			}
			if w, h := logs.Count("level=WARN"), logs.Count("holding batch unacked"); w > 2 || h != 1 {
				t.Errorf("after %d attempts: %d warnings, %d hold lines; want at most 2 and exactly 1:\n%s", db.Attempts, w, h, logs)
			}
			// An attempt cut by WriteTimeout is cancelled on the server too:
			// retries do not pile up sessions waiting for the lock.
			var waiting int64
			if err := r.db.Raw(`SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting).Error; err != nil {
				t.Fatalf("pg_stat_activity: %v", err)
			}
			if waiting > 1 {
				t.Errorf("%d sessions waiting for a lock after %d attempts, want at most 1", waiting, db.Attempts)
			}
			if e := logs.Count("level=ERROR"); e != 0 {
				t.Errorf("%d error lines while held, want 0:\n%s", e, logs)
			}

			clear()
			testenv.WaitFor(t, 30*time.Second, "every held order written", func() bool {
				return r.count(t, "true") == n
			})
			testenv.WaitFor(t, 10*time.Second, "ready again", func() bool {
				got := readyOf(t, c)
				return got.Ready && got.Database == consumer.WriteStatus{Writable: true}
			})
			if l := logs.Count("database writable again"); l != 1 {
				t.Errorf("%d resume lines, want 1:\n%s", l, logs)
			}
			stop()
			if got := r.count(t, fmt.Sprintf("message_id IN ('%s')", strings.Join(ids, "','"))); got != n {
				t.Errorf("orders with the published ids = %d, want %d", got, n)
			}
			if d := brokertest.Depth(t, r.ch, r.topo.DeadLetterQueue()); d != 0 {
				t.Errorf("%d messages dead-lettered, want 0", d)
			}
			if d := brokertest.Depth(t, r.ch, r.topo.Queue); d != 0 {
				t.Errorf("%d messages back in the queue after stop, want 0 (all acked)", d)
			}
			if w := logs.Count("level=WARN"); w > 2 {
				t.Errorf("%d warnings in all, want at most 2:\n%s", w, logs)
			}
		})
	}
}

// TestOrdersRejectedByTheDatabaseAreDeadLetteredAlone: an order that passes
// billing's rules but that PostgreSQL rejects for its own values (here a
// CHECK the rules do not know, 23514, and a division by zero in another,
// 22012) goes to the DLQ with the reason, at once and alone; the other
// orders of its batch are written, and writes are never held.
func TestOrdersRejectedByTheDatabaseAreDeadLetteredAlone(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	mustExec(t, r.db, `ALTER TABLE orders ADD CONSTRAINT test_refused CHECK (user_id <> 'refused')`)
	mustExec(t, r.db, `ALTER TABLE orders ADD CONSTRAINT test_div CHECK (number_of_items / CASE WHEN user_id = 'div-zero' THEN 0 ELSE 1 END > 0)`)
	logs := &testenv.LogBuffer{}
	c, stop := r.run(t, orderdb.New(r.db), consumer.Config{}, slog.New(slog.NewTextHandler(logs, nil)))

	bad := map[string]string{ // message id -> SQLSTATE in the reason
		"refused":  "23514",
		"div-zero": "22012",
	}
	var msgs []amqp.Publishing
	const good = 10
	for i := range good {
		msgs = append(msgs, msg(fmt.Sprintf("good-%d", i), valid))
		if i == 3 || i == 6 {
			id := map[int]string{3: "refused", 6: "div-zero"}[i]
			msgs = append(msgs, msg(id, fmt.Sprintf(`{"user_id":%q,"number_of_items":1,"total_amount":"1"}`, id)))
		}
	}
	brokertest.Publish(t, r.cfg, r.topo.Queue, msgs...) // one batch, most likely

	testenv.WaitFor(t, 10*time.Second, "bad orders dead-lettered", func() bool {
		return brokertest.Depth(t, r.ch, r.topo.DeadLetterQueue()) == len(bad)
	})
	testenv.WaitFor(t, 10*time.Second, "good orders written", func() bool { return r.count(t, "true") == good })
	if got := readyOf(t, c); !got.Ready || !got.Database.Writable {
		t.Errorf("readiness = %+v, want ready and writable", got)
	}
	stop()
	if d := brokertest.Depth(t, r.ch, r.topo.Queue); d != 0 {
		t.Errorf("%d messages back in the queue after stop, want 0", d)
	}
	if n := r.count(t, "message_id LIKE 'good-%'"); n != good {
		t.Errorf("good orders = %d, want %d", n, good)
	}
	for range bad {
		d := brokertest.Get(t, r.ch, r.topo.DeadLetterQueue(), 5*time.Second)
		reason, _ := d.Headers[consumer.HeaderReason].(string)
		code, ok := bad[d.MessageId]
		if !ok || !strings.Contains(reason, "SQLSTATE "+code) || !strings.Contains(reason, order.ErrRejected.Error()) {
			t.Errorf("dead letter %q: reason %q, want one naming SQLSTATE %s", d.MessageId, reason, code)
		}
		if n := deliveries(d); n > 1 {
			t.Errorf("dead letter %q was delivered %d times, want 1 (no requeue)", d.MessageId, n)
		}
	}
	if h := logs.Count("holding batch unacked"); h != 0 {
		t.Errorf("writes held %d times for rejected orders, want never:\n%s", h, logs)
	}
}

// deliveries is how many times the broker handed out a message before it
// reached the DLQ, from its x-delivery-count header (absent the first time).
func deliveries(d amqp.Delivery) int64 {
	switch v := d.Headers["x-delivery-count"].(type) {
	case int64:
		return v + 1
	case int32:
		return int64(v) + 1
	default:
		return 1
	}
}

// BenchmarkConsume measures orders written per second from a full queue.
func BenchmarkConsume(b *testing.B) {
	r := newRig(b)
	msgs := make([]amqp.Publishing, b.N)
	for i := range msgs {
		msgs[i] = msg(fmt.Sprintf("bench-%d", i), valid)
	}
	brokertest.Publish(b, r.cfg, r.topo.Queue, msgs...)
	b.ResetTimer()
	start := time.Now()
	stop := r.start(b, orderdb.New(r.db))
	testenv.WaitFor(b, 5*time.Minute, "all consumed", func() bool { return r.count(b, "true") == int64(b.N) })
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "orders/s")
}

// TestReusedKeyIsDeadLetteredWithItsReason: a user who sends a second,
// different order under a key they used already gets no second row; that
// message goes to the DLQ with the reason, whether it arrives in the same
// batch as the first or after it. Another user's order under the same key
// is written, and a retry of the first order is absorbed.
func TestReusedKeyIsDeadLetteredWithItsReason(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	stop := r.start(t, orderdb.New(r.db))

	first := `{"user_id":"alice","number_of_items":1,"total_amount":"10"}`
	other := `{"user_id":"alice","number_of_items":2,"total_amount":"20"}`
	bob := `{"user_id":"bob","number_of_items":1,"total_amount":"10"}`
	brokertest.Publish(t, r.cfg, r.topo.Queue, msg("order-42", first), msg("order-42", other), msg("order-42", bob))
	testenv.WaitFor(t, 10*time.Second, "the first batch", func() bool { return r.count(t, "true") == 2 })
	brokertest.Publish(t, r.cfg, r.topo.Queue, msg("order-42", first), msg("order-42", other))
	testenv.WaitFor(t, 10*time.Second, "dead letters", func() bool {
		return brokertest.Depth(t, r.ch, r.topo.DeadLetterQueue()) == 2
	})
	stop()

	want := map[string]int64{
		"true": 2,
		"message_id = 'order-42' AND user_id = 'alice' AND number_of_items = 1": 1,
		"message_id = 'order-42' AND user_id = 'bob'":                           1,
	}
	for where, n := range want {
		if got := r.count(t, where); got != n {
			t.Errorf("rows where %s = %d, want %d", where, got, n)
		}
	}
	if n := brokertest.Depth(t, r.ch, r.topo.Queue); n != 0 {
		t.Errorf("queue holds %d after stop, want 0", n)
	}
	for range 2 {
		d := brokertest.Get(t, r.ch, r.topo.DeadLetterQueue(), 5*time.Second)
		if reason, _ := d.Headers[consumer.HeaderReason].(string); reason != order.ErrKeyReused.Error() || string(d.Body) != other {
			t.Errorf("dead letter %q: reason %q body %s, want %q and the second order", d.MessageId, reason, d.Body, order.ErrKeyReused)
		}
	}
}

// batchRecorder records the size of every batch saved.
type batchRecorder struct {
	*orderdb.Store
	mu    sync.Mutex
	sizes []int
}

func (b *batchRecorder) Save(ctx context.Context, orders []order.Order) (order.Saved, error) {
	b.mu.Lock()
	b.sizes = append(b.sizes, len(orders))
	b.mu.Unlock()
	return b.Store.Save(ctx, orders)
}

// TestReturnedMessagesAreTakenOneAtATime: after a crash, the messages the
// crashed consumer held come back first and billing writes them one per
// transaction, so one that crashes billing is alone in flight; fresh
// messages are then taken in batches again.
func TestReturnedMessagesAreTakenOneAtATime(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	if err := r.topo.Declare(r.ch); err != nil {
		t.Fatal(err)
	}
	const held = 5
	var msgs []amqp.Publishing
	for i := range held {
		msgs = append(msgs, msg(fmt.Sprintf("returned-%d", i), valid))
	}
	brokertest.Publish(t, r.cfg, r.topo.Queue, msgs...)

	// A consumer takes them all and dies without settling any.
	crashed := brokertest.Channel(t, r.cfg)
	if err := crashed.Qos(held, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := crashed.Consume(r.topo.Queue, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range held {
		<-ds
	}
	if err := crashed.Close(); err != nil {
		t.Fatal(err)
	}

	rec := &batchRecorder{Store: orderdb.New(r.db)}
	stop := r.start(t, rec)
	testenv.WaitFor(t, 10*time.Second, "returned orders written", func() bool { return r.count(t, "true") == held })
	var fresh []amqp.Publishing
	for i := range 20 {
		fresh = append(fresh, msg(fmt.Sprintf("fresh-%d", i), valid))
	}
	brokertest.Publish(t, r.cfg, r.topo.Queue, fresh...)
	testenv.WaitFor(t, 10*time.Second, "fresh orders written", func() bool { return r.count(t, "true") == held+20 })
	stop()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.sizes) < held || slices.Max(rec.sizes[:held]) != 1 {
		t.Errorf("batch sizes %v: want the %d returned messages written one per batch first", rec.sizes, held)
	}
	if len(rec.sizes) > held+10 {
		t.Errorf("batch sizes %v: the fresh messages were not batched", rec.sizes)
	}
}
