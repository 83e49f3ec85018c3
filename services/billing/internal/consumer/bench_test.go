package consumer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/broker"
	"moviestream/pkg/broker/brokertest"
	"moviestream/pkg/testenv"
	"moviestream/services/billing/internal/consumer"
	"moviestream/services/billing/internal/order"
	"moviestream/services/billing/internal/orderdb"
)

// drainBacklog is the backlog BenchmarkDrain starts each consumer on.
// BENCH_DRAIN_BACKLOG overrides it (the figure is for 100,000).
func drainBacklog(b *testing.B) int {
	if s := os.Getenv("BENCH_DRAIN_BACKLOG"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("BENCH_DRAIN_BACKLOG=%q: want a positive number", s)
		}
		return n
	}
	return 50_000
}

// BenchmarkDrain measures how fast a backlog of distinct orders, already
// in the queue when the consumer starts, becomes rows (orders/s, from the
// start until the last row is committed): billing's consumer with the
// settings of .env, and as the reference of the same run a bare consumer
// (amqp091 and pgx, prefetch 2000, 1,000-row transactions, a plain
// multi-row INSERT, one multiple-ack per transaction), each on its own
// quorum queue and fresh database. BENCH_DRAIN_MATRIX=1 adds other
// prefetch and batch sizes, from which .env's were chosen.
func BenchmarkDrain(b *testing.B) {
	testenv.Load(b)
	prefetch, err1 := strconv.Atoi(testenv.Get(b, "BILLING_PREFETCH"))
	batch, err2 := strconv.Atoi(testenv.Get(b, "BILLING_BATCH_SIZE"))
	if err1 != nil || err2 != nil {
		b.Fatalf("BILLING_PREFETCH, BILLING_BATCH_SIZE in .env: %v %v", err1, err2)
	}
	b.Run(fmt.Sprintf("billing/prefetch=%d,batch=%d", prefetch, batch), func(b *testing.B) {
		benchDrain(b, func(r *rig) func() { return runConsumer(b, r, prefetch, batch) })
	})
	b.Run("bare-reference", func(b *testing.B) {
		benchDrain(b, func(r *rig) func() { return runBare(b, r) })
	})
	if os.Getenv("BENCH_DRAIN_MATRIX") == "" {
		return
	}
	for _, s := range [][2]int{{2000, 500}, {2000, 1000}, {4000, 1000}, {4000, 2000}, {8000, 2000}} {
		b.Run(fmt.Sprintf("billing/prefetch=%d,batch=%d", s[0], s[1]), func(b *testing.B) {
			benchDrain(b, func(r *rig) func() { return runConsumer(b, r, s[0], s[1]) })
		})
	}
}

// benchDrain fills a fresh queue, starts a consumer with start, and times
// it until every order is a row.
func benchDrain(b *testing.B, start func(*rig) (stop func())) {
	n := drainBacklog(b)
	var took, goCPU, pgCPU time.Duration
	pgKnown := true
	for range b.N {
		b.StopTimer()
		r := newRig(b)
		msgs := make([]amqp.Publishing, n)
		for i := range msgs {
			msgs[i] = msg(fmt.Sprintf("drain-%d", i),
				fmt.Sprintf(`{"user_id":"u%d","number_of_items":"%d","total_amount":"%d.%02d"}`, i%1000, 1+i%7, i%500, i%100))
		}
		brokertest.Publish(b, r.cfg, r.topo.Queue, msgs...)
		b.StartTimer()
		t0 := time.Now()
		cpu0 := processCPU()
		stop := start(r)
		testenv.WaitFor(b, 5*time.Minute, "backlog drained", func() bool { return drained(b, r, n) })
		took += time.Since(t0)
		b.StopTimer()
		goCPU += processCPU() - cpu0
		if c, ok := backendCPU(b, r); ok {
			pgCPU += c
		} else {
			pgKnown = false
		}
		stop()
	}
	b.ReportMetric(float64(n*b.N)/took.Seconds(), "orders/s")
	b.ReportMetric(float64(goCPU.Microseconds())/float64(n*b.N), "go-us/order")
	if pgKnown {
		b.ReportMetric(float64(pgCPU.Microseconds())/float64(n*b.N), "pg-us/order")
	}
}

// processCPU is the CPU time this process has used. Beside orders/s the
// benchmark reports CPU per order, of this process (the consumer) and of
// the database's backends: on a machine shared with other work the
// throughput of two identical runs can differ twofold, the CPU per order
// hardly at all.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// backendCPU is the CPU time used by the PostgreSQL backends connected to
// the test's database, read from /proc; false when they cannot be read
// there (a database on another host).
func backendCPU(b *testing.B, r *rig) (time.Duration, bool) {
	var pids []int
	if err := r.db.Raw("SELECT pid FROM pg_stat_activity WHERE datname = current_database()").Scan(&pids).Error; err != nil {
		b.Fatalf("backends: %v", err)
	}
	var total time.Duration
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, false
		}
		// Fields after the command name, which may hold spaces: state is
		// the first, utime and stime the 12th and 13th, in clock ticks
		// (100 a second on Linux).
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 13 {
			return 0, false
		}
		utime, err1 := strconv.ParseInt(f[11], 10, 64)
		stime, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, false
		}
		total += time.Duration(utime+stime) * 10 * time.Millisecond
	}
	return total, true
}

// drained reports whether all n orders are rows. It counts them only once
// the highest id says they may be (ids have gaps: the writability probe
// and a failed attempt use some), so that the polling itself costs the
// database next to nothing.
func drained(b *testing.B, r *rig, n int) bool {
	var top int64
	if err := r.db.Raw("SELECT coalesce(max(id), 0) FROM orders").Scan(&top).Error; err != nil {
		b.Fatalf("max id: %v", err)
	}
	return top >= int64(n) && r.count(b, "true") == int64(n)
}

func runConsumer(b *testing.B, r *rig, prefetch, batch int) (stop func()) {
	return runConsumerStore(b, r, prefetch, batch, orderdb.New(r.db))
}

func runConsumerStore(b *testing.B, r *rig, prefetch, batch int, store order.Store) (stop func()) {
	_, stop = r.launch(b, store, consumer.Config{Prefetch: prefetch, BatchSize: batch}, quiet)
	return stop
}

// runBare is the reference consumer: what billing does, minus everything
// that makes it billing (validation, dedupe, dead letters, holds).
func runBare(b *testing.B, r *rig) (stop func()) {
	const prefetch, batch = 2000, 1000
	conn, err := broker.Dial(r.cfg)
	if err != nil {
		b.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		b.Fatal(err)
	}
	deliveries, err := ch.Consume(r.topo.Queue, "", false, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pg, err := pgx.Connect(ctx, r.dbCfg.DSN())
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var rows []amqp.Delivery
		args := make([]any, 0, 4*batch)
		var sql strings.Builder
		flush := func() bool {
			sql.Reset()
			args = args[:0]
			sql.WriteString("INSERT INTO orders (message_id, user_id, number_of_items, total_amount) VALUES ")
			for i, d := range rows {
				var o struct{ UserID, NumberOfItems, TotalAmount string }
				_ = json.Unmarshal(d.Body, &struct {
					U *string `json:"user_id"`
					N *string `json:"number_of_items"`
					T *string `json:"total_amount"`
				}{&o.UserID, &o.NumberOfItems, &o.TotalAmount})
				if i > 0 {
					sql.WriteByte(',')
				}
				sql.WriteString("($" + strconv.Itoa(4*i+1) + ",$" + strconv.Itoa(4*i+2) +
					",$" + strconv.Itoa(4*i+3) + "::integer,$" + strconv.Itoa(4*i+4) + "::numeric)")
				args = append(args, d.MessageId, o.UserID, o.NumberOfItems, o.TotalAmount)
			}
			tx, err := pg.Begin(ctx)
			if err == nil {
				if _, err = tx.Exec(ctx, sql.String(), args...); err == nil {
					err = tx.Commit(ctx)
				} else {
					_ = tx.Rollback(ctx)
				}
			}
			if err != nil {
				if ctx.Err() == nil {
					b.Errorf("bare insert: %v", err)
				}
				return false
			}
			_ = rows[len(rows)-1].Ack(true)
			rows = rows[:0]
			return true
		}
		// A batch is written when full, or 5ms after its first message.
		linger := time.NewTimer(time.Hour)
		for {
			select {
			case d, ok := <-deliveries:
				if !ok {
					return
				}
				if len(rows) == 0 {
					linger.Reset(5 * time.Millisecond)
				}
				rows = append(rows, d)
				if len(rows) == batch {
					linger.Stop()
					if !flush() {
						return
					}
				}
			case <-linger.C:
				if len(rows) > 0 && !flush() {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			_ = conn.Close()
			<-done
			_ = pg.Close(context.Background())
		}
	}
	b.Cleanup(stop)
	return stop
}
