//go:build fault

package fault

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"moviestream/e2e/testinfra"
	"moviestream/pkg/backoff"
	"moviestream/pkg/testenv"
)

// Size and bounds of TestClusterNodeFailures. FAULT_CLUSTER_ORDERS
// overrides the number of orders (for a quick run while debugging).
const (
	clusterNodes     = 3
	clusterOrders    = 3000
	clusterClients   = 8
	clusterRate      = 40                     // orders started per second, at most
	clusterReserve   = 300                    // orders held back until the last fault is over, so orders flow after it too
	clusterKeyBudget = 60 * time.Second       // one key's retries, at most
	clusterDeadline  = 4 * time.Minute        // the whole test, cluster start included
	nodeDownFor      = 8 * time.Second        // a killed or stopped node stays down this long (> nodeRecoverLimit)
	nodeRecoverLimit = 5 * time.Second        // publishing and consuming work again this soon after a node fails
	billingDownFor   = 3 * time.Second        // the killed billing process stays down this long
	lagTolerance     = time.Second            // an order accepted longer ago than this and not yet a row is "behind"
	sampleEvery      = 100 * time.Millisecond // how often the rows are counted during the load
)

// clusterLoad is what the clients saw and what the sampler counted.
type clusterLoad struct {
	keys       []string
	acceptedAt []time.Time // when key i was answered 200; zero: never. Written by the one client owning key i
	attempts   []int

	mu       sync.Mutex
	failures []failedPost // every answer other than 200, in the order the clients got them

	ok    atomic.Int64 // keys answered 200
	other atomic.Int64 // answers that are not 200 and not worth a retry
	held  atomic.Int64 // nanoseconds the feeder waited with the reserve for the last fault to end

	samples []rowSample // written by the sampler only, read after it stopped
}

// failedPost is one POST that did not get 200.
type failedPost struct {
	at     time.Time
	status int // 0: no HTTP answer (connection refused or reset, timeout)
}

type rowSample struct {
	at   time.Time
	rows int64
}

func (l *clusterLoad) fail(at time.Time, status int) {
	l.mu.Lock()
	l.failures = append(l.failures, failedPost{at: at, status: status})
	l.mu.Unlock()
}

// clusterFault is one fault of TestClusterNodeFailures; run returns what
// happened, for the summary.
type clusterFault struct {
	name string
	run  func(t *testing.T, f *clusterFault) string
	at   time.Time // when it struck
	// From when until when a broker node was down (zero for a billing
	// fault): the other nodes must take orders meanwhile.
	downFrom, downTo time.Time
}

// clusterBilling is one of the billing processes sharing the queue.
type clusterBilling struct {
	name string
	port int
	proc *testinfra.Proc
}

func (b *clusterBilling) url(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(b.port) + path
}

// TestClusterNodeFailures runs the gateway and two billing processes on a
// private three-node RabbitMQ cluster (RABBITMQ_ADDRS names all three,
// billing_queue and its DLQ are quorum queues with three replicas) and
// sends 3,000 orders with distinct Idempotency-Keys through the gateway
// from 8 clients, each retrying its key on 503, 502 or a failed connection,
// while in turn: the node holding billing_queue's leader is SIGKILLed and
// started again, another node is stopped gracefully and started again,
// and one billing process is SIGKILLed in the middle of a batch and
// started again. Then every key must have been answered 200 and be
// exactly one row with the values sent, no row may exist that was not
// sent, and both queues must be empty. It prints, per fault, how long
// publishing answered 503 and how long the rows took to catch up.
func TestClusterNodeFailures(t *testing.T) {
	begin := time.Now()
	deadline := begin.Add(clusterDeadline)
	total := clusterOrders
	if v := os.Getenv("FAULT_CLUSTER_ORDERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2*clusterReserve {
			t.Fatalf("FAULT_CLUSTER_ORDERS=%q: want a number >= %d", v, 2*clusterReserve)
		}
		total = n
	}

	cluster := testinfra.StartRabbitCluster(t, clusterNodes)
	t.Logf("private RabbitMQ cluster of %d nodes formed in %s: %s", clusterNodes, cluster.Formed.Round(time.Millisecond), cluster.Addrs())
	s := newClusterStack(t, cluster)

	// Billing A creates the queues (the gateway may not create the main
	// one); then both queues must have a replica on every node.
	billingA := s.startClusterBilling(t, "billing-a")
	waitStatus(t, 30*time.Second, billingA.url("/ready"), http.StatusOK)
	for _, q := range []string{queue, dlq} {
		rep := cluster.WaitReplicas(t, vhost, q, clusterNodes, 30*time.Second)
		if len(rep.Members) != clusterNodes {
			t.Fatalf("%s has replicas on %v, want all %d nodes", q, rep.Members, clusterNodes)
		}
	}
	args := strings.TrimSpace(cluster.Ctl(t, "list_queues", "-p", vhost, "--quiet", "name", "arguments"))
	for _, q := range []string{queue, dlq} {
		if !hasGroupSize(args, q, clusterNodes) {
			t.Fatalf("%s not declared with x-quorum-initial-group-size %d (RABBITMQ_QUORUM_SIZE):\n%s", q, clusterNodes, args)
		}
	}
	billingB := s.startClusterBilling(t, "billing-b")
	s.gateway = testinfra.StartService(t, binDir, "gateway", envFile, s.clusterEnv(s.gatewayEnv()))
	waitStatus(t, 30*time.Second, billingB.url("/ready"), http.StatusOK)
	waitStatus(t, 30*time.Second, s.gatewayURL("/ready"), http.StatusOK)
	billings := []*clusterBilling{billingA, billingB}
	t.Logf("stack ready %s after the start", time.Since(begin).Round(time.Millisecond))

	run := fmt.Sprintf("cl%d", time.Now().UnixNano()%1_000_000)
	l := &clusterLoad{
		keys:       make([]string, total),
		acceptedAt: make([]time.Time, total),
		attempts:   make([]int, total),
	}
	for i := range l.keys {
		l.keys[i] = fmt.Sprintf("%s-%05d", run, i)
	}

	// The load: clients, a feeder pacing them, a sampler counting rows.
	// Each stops at ctx's deadline, and a failing test stops them on its
	// way out.
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-30*time.Second))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	faultsOver := make(chan struct{})
	jobs := make(chan int)
	var clients sync.WaitGroup
	for range clusterClients {
		clients.Add(1)
		wg.Go(func() {
			defer clients.Done()
			for i := range jobs {
				s.submitClustered(ctx, l, i)
			}
		})
	}
	loadStart := time.Now()
	wg.Go(func() {
		defer close(jobs)
		tick := time.NewTicker(time.Second / clusterRate)
		defer tick.Stop()
		for i := range total {
			if i == total-clusterReserve {
				waited := time.Now()
				select {
				case <-faultsOver:
				case <-ctx.Done():
					return
				}
				l.held.Store(int64(time.Since(waited)))
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	})
	sampling, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	sampled := make(chan struct{}) // closed when the sampler is done with l.samples
	wg.Go(func() {
		defer close(sampled)
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		for {
			if n := s.tryCountOrders(); n >= 0 {
				l.samples = append(l.samples, rowSample{at: time.Now(), rows: n})
			}
			select {
			case <-sampling.Done():
				return
			case <-tick.C:
			}
		}
	})

	// The faults, in turn, each once a further share of the orders has
	// been accepted, so that orders flow before, during and after each.
	var killed *testinfra.RabbitMQ
	faults := []*clusterFault{
		{name: "leader node SIGKILL, then start", run: func(t *testing.T, f *clusterFault) string {
			var detail string
			killed, detail = s.killLeaderNode(t, cluster, f)
			return detail
		}},
		{name: "another node stopped, then start", run: func(t *testing.T, f *clusterFault) string {
			return s.stopOtherNode(t, cluster, killed, f)
		}},
		{name: "billing SIGKILL mid-batch, then start", run: func(t *testing.T, _ *clusterFault) string {
			return s.killBilling(t, l, billings)
		}},
	}
	report := make([]string, 0, len(faults))
	for k, f := range faults {
		threshold := int64((k + 1) * (total - clusterReserve) / (len(faults) + 1))
		testenv.WaitFor(t, time.Until(deadline.Add(-time.Minute)), fmt.Sprintf("%d orders accepted before %q", threshold, f.name),
			func() bool { return l.ok.Load() >= threshold })
		f.at = time.Now()
		detail := f.run(t, f)
		report = append(report, fmt.Sprintf("  %d. %s, at %d accepted, took %s: %s",
			k+1, f.name, threshold, time.Since(f.at).Round(time.Millisecond), detail))
	}
	close(faultsOver)
	clients.Wait()
	loadTook := time.Since(loadStart)
	if ctx.Err() != nil {
		t.Errorf("the load did not finish before the test's deadline (%s in all)", clusterDeadline)
	}

	var accepted []string
	for i, at := range l.acceptedAt {
		if !at.IsZero() {
			accepted = append(accepted, l.keys[i])
		}
	}
	drained := testenv.WaitFor(t, time.Until(deadline), "every accepted order written", func() bool {
		return s.tryCountOrders() >= int64(len(accepted))
	})
	stopSampling()
	<-sampled
	end := time.Now()

	// What each surviving billing process wrote and deduplicated, before
	// it stops.
	var metrics []string
	for _, b := range billings {
		m := scrape(t, b.url("/metrics"))
		metrics = append(metrics, fmt.Sprintf("%s %s written, %s duplicates skipped (since its last start)",
			b.name, m["moviestream_orders_written_total"], m["moviestream_orders_duplicate_total"]))
	}
	// Stopped, billing hands back whatever it has not acked; then both
	// queues must be empty.
	for _, b := range billings {
		if code, _ := b.proc.Stop(t, syscall.SIGINT, 30*time.Second); code != 0 {
			t.Errorf("%s exit code %d after SIGINT, want 0", b.name, code)
		}
	}
	mainDepth, deadDepth := s.ready(t)
	final, err := cluster.Replicas(t, vhost, queue)
	if err != nil {
		t.Errorf("replicas of %s at the end: %v", queue, err)
	} else if len(final.Online) != clusterNodes {
		t.Errorf("%s at the end: replicas online on %v, want all %d nodes", queue, final.Online, clusterNodes)
	}

	// Compare the table with what was sent and answered.
	index := make(map[string]int, total)
	for i, k := range l.keys {
		index[k] = i
	}
	perKey := make(map[string]int, total)
	unexpected, mismatched := 0, 0
	rows := s.allOrders(t)
	for _, r := range rows {
		if r.MessageID == nil {
			unexpected++
			continue
		}
		i, known := index[*r.MessageID]
		if !known {
			unexpected++
			continue
		}
		perKey[*r.MessageID]++
		if _, user, items, amount := orderBody(i); r.UserID != user || r.NumberOfItems != items || r.TotalAmount != amount {
			mismatched++
		}
	}
	lost, duplicated, unanswered, storedUnanswered := 0, 0, 0, 0
	for i, k := range l.keys {
		n := perKey[k]
		if n > 1 {
			duplicated += n - 1
		}
		switch {
		case !l.acceptedAt[i].IsZero() && n == 0:
			lost++
		case l.acceptedAt[i].IsZero():
			unanswered++
			if n > 0 {
				storedUnanswered++
			}
		}
	}
	attempts := 0
	for _, a := range l.attempts {
		attempts += a
	}
	byStatus := map[int]int{}
	for _, f := range l.failures {
		byStatus[f.status]++
	}

	lines := []string{}
	for k, f := range faults {
		next := end
		if k+1 < len(faults) {
			next = faults[k+1].at
		}
		line := fmt.Sprintf("  %d. %s: %s; %s", k+1, f.name, l.failureWindow(f.at, next), l.catchUp(f.at, next))
		if !f.downFrom.IsZero() {
			// The surviving nodes must take and deliver orders while one is
			// down, within seconds of the failure: the clients moved to them
			// without a restart, and without waiting for the node's return.
			refused := time.Duration(0)
			if last := l.lastFailure(f.at, f.downTo); !last.IsZero() {
				refused = last.Sub(f.at)
			}
			taken, written := l.during(f.at.Add(nodeRecoverLimit), f.downTo)
			line += fmt.Sprintf("; node down %s: last refusal +%s, from +%s until its return %d orders accepted and %d rows written",
				f.downTo.Sub(f.downFrom).Round(time.Millisecond), refused.Round(time.Millisecond), nodeRecoverLimit, taken, written)
			if refused > nodeRecoverLimit || taken == 0 || written == 0 {
				t.Errorf("%s: publishing refused until +%s; from +%s until the node's return %d orders accepted and %d rows written; want publishing back within %s and both > 0 (the gateway and billing must work on the other nodes)",
					f.name, refused.Round(time.Millisecond), nodeRecoverLimit, taken, written, nodeRecoverLimit)
			}
		}
		lines = append(lines, line)
	}
	trail := []string{"gateway " + nodeTrail(s.gateway, cluster)}
	for _, b := range billings {
		trail = append(trail, b.name+" "+nodeTrail(b.proc, cluster))
	}
	summary := fmt.Sprintf(`cluster fault summary
  cluster                %d nodes, formed in %s; billing_queue and its DLQ: quorum queues, %d replicas
  orders sent            %d distinct Idempotency-Keys by %d clients at most %d/s (%d attempts: %d answered 503, %d 502, %d without an HTTP answer, %d other)
  accepted (200)         %d    never answered 200 within %s of retries: %d
  load took              %s (the last %d orders waited %s for the faults to end)
  faults, in turn:
%s
  per fault, from the moment it struck until the next one (or the end):
%s
  every accepted order written %s after the load ended
  billing processes      %s
  connected to nodes     %s
  rows in orders         %d
  lost                   %d   (answered 200, no row)
  duplicated             %d   (more than one row for a key)
  unexpected             %d   (rows whose key was never sent)
  wrong values           %d   (row differs from the order sent)
  stored without a 200   %d
  billing_queue          %d messages left
  billing_queue.dlq      %d messages
  test took              %s`,
		clusterNodes, cluster.Formed.Round(time.Millisecond), len(final.Members),
		total, clusterClients, clusterRate, attempts, byStatus[http.StatusServiceUnavailable], byStatus[http.StatusBadGateway], byStatus[0],
		len(l.failures)-byStatus[http.StatusServiceUnavailable]-byStatus[http.StatusBadGateway]-byStatus[0],
		len(accepted), clusterKeyBudget, unanswered,
		loadTook.Round(time.Millisecond), clusterReserve, time.Duration(l.held.Load()).Round(time.Millisecond),
		strings.Join(report, "\n"), strings.Join(lines, "\n"),
		drained.Round(time.Millisecond), strings.Join(metrics, "; "),
		strings.Join(trail, "; "),
		len(rows), lost, duplicated, unexpected, mismatched, storedUnanswered, mainDepth, deadDepth,
		time.Since(begin).Round(time.Millisecond))
	t.Log(summary)
	fmt.Println(summary)

	if lost != 0 || duplicated != 0 || unexpected != 0 || mismatched != 0 {
		t.Errorf("lost=%d duplicated=%d unexpected=%d wrong values=%d, want all 0", lost, duplicated, unexpected, mismatched)
	}
	// Retries are bounded but long: a key never answered 200 means the
	// cluster stopped taking orders for longer than a node failure may
	// cost. (A row for such a key is allowed: its publish may have been
	// enqueued with the confirm lost.)
	if unanswered != 0 {
		t.Errorf("%d orders never answered 200 within %s of retries", unanswered, clusterKeyBudget)
	}
	if n := l.other.Load(); n != 0 {
		t.Errorf("%d answers were neither 200 nor 503/502/no answer: %v", n, byStatus)
	}
	if mainDepth != 0 || deadDepth != 0 {
		t.Errorf("%s holds %d, %s holds %d; want both empty", queue, mainDepth, dlq, deadDepth)
	}
	if time.Since(begin) > clusterDeadline {
		t.Errorf("the test took %s, more than its %s", time.Since(begin).Round(time.Second), clusterDeadline)
	}
}

// newClusterStack provisions a private PostgreSQL as newStack does and the
// application's vhost and users on cluster; every broker setting names all
// of its nodes.
func newClusterStack(t *testing.T, cluster *testinfra.RabbitCluster) *stack {
	t.Helper()
	s := &stack{t: t}
	s.pg = testinfra.StartPostgres(t)
	s.billingDB = s.pg.CreateDatabase(t, "billing_db", "billing_svc")
	ordersCfg := s.pg.Admin
	ordersCfg.Name = s.billingDB.Name
	s.orders = s.pg.Open(t, ordersCfg)
	s.broker = cluster.AddUser(t, vhost, "moviestream_admin", testinfra.FullAccess)
	gatewayPerm, billingPerm := testinfra.ServicePermissions(queue)
	s.gatewayBroker = cluster.AddUser(t, vhost, "gateway_svc", gatewayPerm)
	s.billingBroker = cluster.AddUser(t, vhost, "billing_svc", billingPerm)
	s.gatewayPort = testenv.FreePort(t)
	s.inventoryPort = testenv.FreePort(t)
	return s
}

// clusterEnv adds the cluster's settings to a service's environment:
// brokerEnv already lists every node in RABBITMQ_ADDRS; the queues get a
// replica on each.
func (s *stack) clusterEnv(env map[string]string) map[string]string {
	env["RABBITMQ_QUORUM_SIZE"] = strconv.Itoa(clusterNodes)
	return env
}

// startClusterBilling starts one more billing process with a health port
// of its own.
func (s *stack) startClusterBilling(t *testing.T, name string) *clusterBilling {
	t.Helper()
	b := &clusterBilling{name: name, port: testenv.FreePort(t)}
	env := s.clusterEnv(s.billingEnv())
	env["BILLING_HEALTH_PORT"] = strconv.Itoa(b.port)
	b.proc = testinfra.StartService(t, binDir, "billing", envFile, env)
	return b
}

// submitClustered posts order i under its key until it is answered 200,
// retrying on 503, 502 and on failed connections with capped backoff, at
// most clusterKeyBudget; every other answer is recorded.
func (s *stack) submitClustered(ctx context.Context, l *clusterLoad, i int) {
	body, _, _, _ := orderBody(i)
	bo := backoff.New(retryMin, retryMax)
	deadline := time.Now().Add(clusterKeyBudget)
	for {
		l.attempts[i]++
		r := doCtx(ctx, http.MethodPost, s.gatewayURL("/api/billing"), jsonType, body, "Idempotency-Key", l.keys[i])
		now := time.Now()
		switch {
		case r.status == http.StatusOK:
			l.acceptedAt[i] = now
			l.ok.Add(1)
			return
		case r.status == http.StatusServiceUnavailable, r.status == http.StatusBadGateway, r.err != nil:
			l.fail(now, r.status)
		default:
			l.fail(now, r.status)
			l.other.Add(1)
			return // a client error: retrying cannot help
		}
		if now.After(deadline) || bo.Sleep(ctx) != nil {
			return
		}
	}
}

// killLeaderNode SIGKILLs the node holding billing_queue's leader, waits
// until another replica leads, keeps the node down for nodeDownFor and
// starts it again; it returns the killed node.
func (s *stack) killLeaderNode(t *testing.T, c *testinfra.RabbitCluster, f *clusterFault) (*testinfra.RabbitMQ, string) {
	t.Helper()
	leader, err := c.Leader(t, vhost, queue)
	if err != nil {
		t.Fatalf("leader of %s: %v", queue, err)
	}
	at := time.Now()
	leader.Kill(t)
	f.downFrom = time.Now()
	var next *testinfra.RabbitMQ
	elected := testenv.WaitFor(t, 30*time.Second, "a new leader of "+queue, func() bool {
		r, err := c.Leader(t, vhost, queue)
		next = r
		return err == nil && r != leader
	})
	pause(nodeDownFor - time.Since(at)) // the fault lasts: the node stays dead
	down := time.Since(at)
	f.downTo = time.Now()
	boot := leader.Start(t)
	back := s.waitFullCluster(t, c, at)
	return leader, fmt.Sprintf("killed %s (leader); %s leads %s after the kill; down %s, booted again in %s; cluster whole, 3 replicas online %s after the kill",
		leader.Node, next.Node, elected.Round(time.Millisecond), down.Round(time.Millisecond), boot.Round(time.Millisecond), back.Round(time.Millisecond))
}

// stopOtherNode stops, gracefully, a node other than the one killed
// before: the one the gateway is connected to now, so that the clients
// move again, this time on the server's orderly close (else the queue's
// leader, else any other); keeps it down for nodeDownFor and starts it
// again.
func (s *stack) stopOtherNode(t *testing.T, c *testinfra.RabbitCluster, killed *testinfra.RabbitMQ, f *clusterFault) string {
	t.Helper()
	leader, err := c.Leader(t, vhost, queue)
	if err != nil {
		t.Fatalf("leader of %s: %v", queue, err)
	}
	var target *testinfra.RabbitMQ
	for _, r := range []*testinfra.RabbitMQ{lastNode(s.gateway, c), leader} {
		if r != nil && r != killed {
			target = r
			break
		}
	}
	if target == nil {
		for _, r := range c.Nodes {
			if r != killed {
				target = r
				break
			}
		}
	}
	var roles []string
	if target == lastNode(s.gateway, c) {
		roles = append(roles, "the gateway's node")
	}
	if target == leader {
		roles = append(roles, "leader")
	} else {
		roles = append(roles, "follower")
	}
	role := strings.Join(roles, ", ")
	at := time.Now()
	stopped := target.Stop(t)
	f.downFrom = time.Now()
	pause(nodeDownFor - time.Since(at))
	down := time.Since(at)
	f.downTo = time.Now()
	boot := target.Start(t)
	back := s.waitFullCluster(t, c, at)
	leads := "?"
	if now, err := c.Leader(t, vhost, queue); err == nil {
		leads = now.Node
	}
	return fmt.Sprintf("stopped %s (%s) in %s; down %s, booted again in %s; cluster whole, 3 replicas online %s after the stop; %s leads",
		target.Node, role, stopped.Round(time.Millisecond), down.Round(time.Millisecond), boot.Round(time.Millisecond), back.Round(time.Millisecond), leads)
}

// waitFullCluster waits until every node runs in the cluster and both
// queues have all their replicas online with a leader; it returns the
// time since since.
func (s *stack) waitFullCluster(t *testing.T, c *testinfra.RabbitCluster, since time.Time) time.Duration {
	t.Helper()
	c.WaitFormed(t, 60*time.Second)
	for _, q := range []string{queue, dlq} {
		c.WaitReplicas(t, vhost, q, clusterNodes, 60*time.Second)
	}
	return time.Since(since)
}

// killBilling kills the first billing process while both are in the
// middle of a batch: their INSERTs wait for a lock the test holds on
// orders, and the orders accepted meanwhile are delivered and held
// unacked. The killed process's messages go back to the queue and to the
// other process; its orphaned INSERT may still commit once the lock is
// released, and the redelivered copies must then be skipped, not written
// twice. It is started again after billingDownFor.
func (s *stack) killBilling(t *testing.T, l *clusterLoad, billings []*clusterBilling) string {
	t.Helper()
	// Both processes must have been writing: the queue is shared.
	for _, b := range billings {
		if n := scrape(t, b.url("/metrics"))["moviestream_orders_written_total"]; n == "" || n == "0" {
			t.Errorf("%s wrote no order before the fault (written_total %q): the queue is not shared", b.name, n)
		}
	}
	victim := billings[0]
	release := s.lockOrders(t)
	testenv.WaitFor(t, 30*time.Second, "both billing processes' writes waiting for the lock", func() bool {
		return s.billingBackends(t, true) >= int64(len(billings))
	})
	before := l.ok.Load()
	// Let orders pile up unacked in both processes; bounded, not a wait
	// for something that must happen.
	testinfra.Poll(10*time.Second, 50*time.Millisecond, func() bool { return l.ok.Load()-before >= 100 })
	held := l.ok.Load() - before
	victim.proc.Kill(t)
	rowsBefore := s.tryCountOrders()
	release()
	pause(billingDownFor)
	victim.proc.Start(t)
	ready := waitStatus(t, 30*time.Second, victim.url("/ready"), http.StatusOK)
	return fmt.Sprintf("killed %s while both processes' batches waited on a lock and %d more orders were accepted (held unacked); %d rows at the kill; down %s, consuming again %s after its start",
		victim.name, held, rowsBefore, billingDownFor, ready.Round(time.Millisecond))
}

// failureWindow describes the answers other than 200 between from and to:
// how many, and from when to when, counted from the fault.
func (l *clusterLoad) failureWindow(from, to time.Time) string {
	var first, last time.Time
	n := 0
	for _, f := range l.failures {
		if f.at.Before(from) || !f.at.Before(to) {
			continue
		}
		if n == 0 {
			first = f.at
		}
		last = f.at
		n++
	}
	if n == 0 {
		return "publishing never refused (no 503)"
	}
	return fmt.Sprintf("publishing refused for %s (%d answers other than 200, from +%s to +%s)",
		last.Sub(first).Round(time.Millisecond), n, first.Sub(from).Round(time.Millisecond), last.Sub(from).Round(time.Millisecond))
}

// catchUp describes how far the rows fell behind the accepted orders
// between from and to, from the sampler's counts: an order accepted more
// than lagTolerance ago and not yet a row is behind. The rows caught up
// at the last sample that found any behind.
func (l *clusterLoad) catchUp(from, to time.Time) string {
	accepted := make([]time.Time, 0, len(l.acceptedAt))
	for _, at := range l.acceptedAt {
		if !at.IsZero() {
			accepted = append(accepted, at)
		}
	}
	slices.SortFunc(accepted, func(a, b time.Time) int { return a.Compare(b) })
	acceptedBy := func(x time.Time) int64 {
		n, _ := slices.BinarySearchFunc(accepted, x, func(a, x time.Time) int {
			if a.After(x) {
				return 1
			}
			return -1
		})
		return int64(n)
	}
	var lastBehind time.Time
	var worst int64
	for _, sm := range l.samples {
		if sm.at.Before(from) || !sm.at.Before(to) {
			continue
		}
		if behind := acceptedBy(sm.at.Add(-lagTolerance)) - sm.rows; behind > 0 {
			lastBehind = sm.at
			worst = max(worst, behind)
		}
	}
	if lastBehind.IsZero() {
		return fmt.Sprintf("rows never more than %s behind", lagTolerance)
	}
	return fmt.Sprintf("rows caught up %s after it (at most %d orders more than %s behind)",
		lastBehind.Add(sampleEvery).Sub(from).Round(100*time.Millisecond), worst, lagTolerance)
}

// lastFailure is the time of the last answer other than 200 between from
// and to; zero if none.
func (l *clusterLoad) lastFailure(from, to time.Time) time.Time {
	var last time.Time
	for _, f := range l.failures {
		if !f.at.Before(from) && f.at.Before(to) {
			last = f.at
		}
	}
	return last
}

// during counts the orders accepted and the rows written between from and
// to (rows from the sampler's counts).
func (l *clusterLoad) during(from, to time.Time) (accepted int, written int64) {
	for _, at := range l.acceptedAt {
		if !at.IsZero() && !at.Before(from) && at.Before(to) {
			accepted++
		}
	}
	first, last := int64(-1), int64(-1)
	for _, sm := range l.samples {
		if sm.at.Before(from) || !sm.at.Before(to) {
			continue
		}
		if first < 0 {
			first = sm.rows
		}
		last = sm.rows
	}
	return accepted, last - first
}

// lastNode is the node a service connected to last, from its log lines
// "rabbitmq connected"; nil if none.
func lastNode(p *testinfra.Proc, c *testinfra.RabbitCluster) *testinfra.RabbitMQ {
	var last *testinfra.RabbitMQ
	for line := range strings.SplitSeq(p.Log(), "\n") {
		if r := connectedTo(line, c); r != nil {
			last = r
		}
	}
	return last
}

// connectedTo returns the node a log line "rabbitmq connected"
// (pkg/broker.Supervise) names, or nil for any other line.
func connectedTo(line string, c *testinfra.RabbitCluster) *testinfra.RabbitMQ {
	if !strings.Contains(line, `"rabbitmq connected"`) {
		return nil
	}
	_, rest, _ := strings.Cut(line, `"node":"`)
	addr, _, _ := strings.Cut(rest, `"`)
	for _, r := range c.Nodes {
		if r.Addr() == addr {
			return r
		}
	}
	return nil
}

// nodeTrail lists the nodes a service connected to, in order ("1 → 2"),
// from its log lines "rabbitmq connected" (pkg/broker.Supervise); a
// process started again is marked "| ".
func nodeTrail(p *testinfra.Proc, c *testinfra.RabbitCluster) string {
	var trail []string
	for line := range strings.SplitSeq(p.Log(), "\n") {
		if strings.HasPrefix(line, "=== ") && strings.Contains(line, ": start ") && len(trail) > 0 {
			trail = append(trail, "|")
			continue
		}
		if !strings.Contains(line, `"rabbitmq connected"`) {
			continue
		}
		node := "?" // a node the test does not know: shows up in the summary
		if r := connectedTo(line, c); r != nil {
			node = strconv.Itoa(slices.Index(c.Nodes, r) + 1)
		}
		trail = append(trail, node)
	}
	return strings.ReplaceAll(strings.Join(trail, " → "), "→ | →", "|")
}

// hasGroupSize reports whether rabbitmqctl's "name arguments" listing
// shows q declared with x-quorum-initial-group-size n.
func hasGroupSize(listing, q string, n int) bool {
	for line := range strings.SplitSeq(listing, "\n") {
		name, args, ok := strings.Cut(line, "\t")
		if ok && name == q {
			return strings.Contains(args, fmt.Sprintf(`{"x-quorum-initial-group-size",%d}`, n))
		}
	}
	return false
}

// scrape reads a Prometheus text page: each unlabelled sample's value by
// name.
func scrape(t *testing.T, url string) map[string]string {
	t.Helper()
	r := get(url)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %s", url, r)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(r.body)))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if name, value, ok := strings.Cut(line, " "); ok && !strings.Contains(name, "{") {
			m[name] = value
		}
	}
	return m
}
