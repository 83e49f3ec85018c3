package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/broker"
	"moviestream/pkg/pgdb"
)

// The loads, from the table.
const (
	ProxyMovies    = 1_000
	Connections    = 64
	BacklogOrders  = 100_000
	ListMovies     = 1_000_000
	BarePrefetch   = 2000
	BareBatch      = 1000
	BillingApp     = "billing_app"
	GatewayApp     = "gateway_app"
	InventoryApp   = "inventory_app"
	listRequests   = 3
	searchRefRuns  = 11
	backlogWindow  = 2000
	pollInterval   = 50 * time.Millisecond
	settleInterval = 1500 * time.Millisecond
)

// Options configure a run.
type Options struct {
	// RunID marks everything the run creates: lower-case letters and
	// digits, at most 16.
	RunID string
	// NginxURL is the reference proxy the script started in front of
	// inventory, e.g. http://127.0.0.1:40123.
	NginxURL string
	// Dir is the run's temporary directory (wrk scripts).
	Dir string
	// BillingStopped is a file that exists while the run has billing
	// stopped, so that the script's exit trap starts it again if the run
	// dies meanwhile.
	BillingStopped string
	// Scale multiplies every duration (1 = the figures); a quick
	// trial run uses less.
	Scale float64
	// Log receives progress lines.
	Log io.Writer
}

var runIDPattern = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

// CheckRunID refuses a run id that could not mark names safely.
func CheckRunID(id string) error {
	if !runIDPattern.MatchString(id) {
		return fmt.Errorf("loadtest: run id %q: want 1 to 16 lower-case letters or digits", id)
	}
	return nil
}

// Runner measures the rows.
type Runner struct {
	opt Options
	env Env
}

// NewRunner checks opt and reads .env.
func NewRunner(opt Options) (*Runner, error) {
	if err := CheckRunID(opt.RunID); err != nil {
		return nil, err
	}
	if opt.Scale <= 0 {
		opt.Scale = 1
	}
	if opt.Log == nil {
		opt.Log = io.Discard
	}
	env, err := LoadEnv()
	if err != nil {
		return nil, err
	}
	return &Runner{opt: opt, env: env}, nil
}

func (r *Runner) logf(format string, args ...any) {
	fmt.Fprintf(r.opt.Log, "[loadtest %s] %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (r *Runner) dur(d time.Duration) time.Duration {
	return max(time.Duration(float64(d)*r.opt.Scale).Round(time.Second), time.Second)
}

// Run measures every row, in the order, and returns the table.
// A row that cannot be measured becomes an ERROR row; the others still run.
func (r *Runner) Run(ctx context.Context) []Row {
	var rows []Row
	for _, step := range []func(context.Context) []Row{r.proxyRow, r.ordersRow, r.drainRow, r.listRows} {
		if ctx.Err() != nil {
			break
		}
		rows = append(rows, step(ctx)...)
	}
	return rows
}

func connect(ctx context.Context, cfg pgdb.Config) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, cfg.DSN())
	if err != nil {
		return nil, fmt.Errorf("loadtest: connect %s: %w", cfg, err)
	}
	return conn, nil
}

// --- a: GET /api/movies/:id through the gateway vs nginx ---

func (r *Runner) proxyRow(ctx context.Context) []Row {
	const name, rpsTarget, p99Target = "a. GET /api/movies/:id req/s", ">= 0.90x nginx", "<= 1.20x nginx"
	const p99Name = "a. GET /api/movies/:id p99"
	fail := func(err error) []Row {
		return []Row{ErrorRow(name, rpsTarget, err), ErrorRow(p99Name, p99Target, err)}
	}
	if r.opt.NginxURL == "" {
		return fail(errors.New("no reference nginx (-nginx-url)"))
	}
	db, err := connect(ctx, r.env.Inventory)
	if err != nil {
		return fail(err)
	}
	defer db.Close(context.WithoutCancel(ctx))
	r.logf("a: seeding %s movies", Thousands(ProxyMovies))
	ids, err := SeedMovies(ctx, db, r.opt.RunID, ProxyMovies)
	if err != nil {
		return fail(err)
	}
	defer r.deleteMovies(ctx, db)

	script := GetByIDScript(ids)
	run := func(url string, d time.Duration) (WrkResult, error) {
		return Wrk{URL: url, Connections: Connections, Threads: 2, Duration: d, Script: script, Dir: r.opt.Dir}.Run(ctx)
	}
	// Warm both (connection pools, the services' heaps), then measure
	// each for the same time, one after the other.
	for _, u := range []string{r.env.GatewayURL, r.opt.NginxURL} {
		if _, err := run(u, r.dur(2*time.Second)); err != nil {
			return fail(err)
		}
	}
	// Background load on a shared machine drifts: alternate the two, two
	// rounds each, and add up.
	r.logf("a: wrk -c%d, gateway and nginx alternately, 2 rounds each", Connections)
	var gw, ng WrkResult
	for range 2 {
		for _, m := range []struct {
			url string
			sum *WrkResult
		}{{r.env.GatewayURL, &gw}, {r.opt.NginxURL, &ng}} {
			res, err := run(m.url, r.dur(5*time.Second))
			if err != nil {
				return fail(err)
			}
			m.sum.Add(res)
		}
	}
	note := ""
	if bad := gw.StatusErrors + gw.SocketErrors + ng.StatusErrors + ng.SocketErrors; bad > 0 {
		note = fmt.Sprintf("errors: gateway %d non-2xx + %d socket, nginx %d non-2xx + %d socket",
			gw.StatusErrors, gw.SocketErrors, ng.StatusErrors, ng.SocketErrors)
	}
	clean := gw.StatusErrors+gw.SocketErrors == 0
	return []Row{
		{Name: name, Project: PerSecond(gw.RPS()), Reference: PerSecond(ng.RPS()) + " nginx", Ratio: Ratio(gw.RPS(), ng.RPS()),
			Target: rpsTarget, Verdict: verdict(clean && gw.RPS() >= 0.9*ng.RPS()), Note: note},
		{Name: p99Name, Project: Millis(gw.P99()), Reference: Millis(ng.P99()) + " nginx", Ratio: Ratio(float64(gw.P99()), float64(ng.P99())),
			Target: p99Target, Verdict: verdict(clean && float64(gw.P99()) <= 1.2*float64(ng.P99()))},
	}
}

func (r *Runner) deleteMovies(ctx context.Context, db *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	n, err := DeleteMovies(ctx, db, r.opt.RunID)
	if err != nil {
		r.logf("cleanup: %v", err)
		return
	}
	r.logf("deleted the run's %s movies", Thousands(n))
	if n > ProxyMovies {
		if err := VacuumAnalyze(ctx, db, "movies"); err != nil {
			r.logf("cleanup: %v", err)
		}
	}
}

// --- b: POST /api/billing vs raw confirmed publishing ---

func (r *Runner) ordersRow(ctx context.Context) []Row {
	const name, p99Name, errName = "b. POST /api/billing req/s", "b. POST /api/billing p99", "b. POST /api/billing non-2xx"
	const rpsTarget, p99Target, errTarget = ">= 5,000/s", "< 50 ms", "0"
	fail := func(err error) []Row {
		return []Row{ErrorRow(name, rpsTarget, err), ErrorRow(p99Name, p99Target, err), ErrorRow(errName, errTarget, err)}
	}
	userID := OrderUserID(r.opt.RunID, "b")

	// Reference: the same body, confirmed, by as many publishers as wrk
	// has connections, on a private quorum queue of the same broker.
	r.logf("b: raw confirmed publishing, %d publishers, to a private quorum queue", Connections)
	ref, err := r.publishReference(ctx, OrderBody(userID))
	if err != nil {
		return fail(err)
	}

	db, err := connect(ctx, r.env.Billing)
	if err != nil {
		return fail(err)
	}
	defer db.Close(context.WithoutCancel(ctx))
	defer r.deleteOrders(ctx, db, userID)

	r.logf("b: wrk -c%d POST /api/billing through the gateway", Connections)
	gw, err := Wrk{URL: r.env.GatewayURL, Connections: Connections, Threads: 2, Duration: r.dur(10 * time.Second),
		Script: PostOrderScript(userID, "loadtest-"+r.opt.RunID), Dir: r.opt.Dir}.Run(ctx)
	if err != nil {
		return fail(err)
	}
	// Let billing store what the run sent, so that the cleanup finds it
	// all: every 2xx, and maybe a few that wrk cut off after the publish.
	r.logf("b: waiting for billing to store the run's orders")
	note := ""
	if err := r.waitSettled(ctx, CountOrders(db, userID), gw.Requests-gw.StatusErrors); err != nil {
		note = err.Error()
	}
	non2xx := gw.StatusErrors + gw.SocketErrors
	refP99 := Percentile(ref.Latencies, 99)
	return []Row{
		{Name: name, Project: PerSecond(gw.RPS()), Reference: PerSecond(ref.Rate()) + " raw", Ratio: Ratio(gw.RPS(), ref.Rate()),
			Target: rpsTarget, Verdict: verdict(gw.RPS() >= 5000), Note: note},
		{Name: p99Name, Project: Millis(gw.P99()), Reference: Millis(refP99) + " raw", Ratio: Ratio(float64(gw.P99()), float64(refP99)),
			Target: p99Target, Verdict: verdict(gw.P99() < 50*time.Millisecond)},
		{Name: errName, Project: fmt.Sprintf("%d non-2xx, %d socket", gw.StatusErrors, gw.SocketErrors), Reference: "-", Ratio: "-",
			Target: errTarget, Verdict: verdict(non2xx == 0)},
	}
}

func (r *Runner) publishReference(ctx context.Context, body []byte) (PublishResult, error) {
	conn, err := broker.Dial(r.env.Test)
	if err != nil {
		return PublishResult{}, fmt.Errorf("loadtest: dial %s: %w", r.env.Test, err)
	}
	defer conn.Close()
	queue := TestQueue(r.opt.RunID, "publish")
	ch, err := conn.Channel()
	if err != nil {
		return PublishResult{}, fmt.Errorf("loadtest: channel: %w", err)
	}
	if err := DeclareTestQueue(ch, queue); err != nil {
		return PublishResult{}, err
	}
	_ = ch.Close()
	defer func() {
		if err := DeleteQueues(r.env.Test, queue); err != nil {
			r.logf("cleanup: %v", err)
		}
	}()
	return ConfirmedPublishing(ctx, conn, queue, Connections, r.dur(5*time.Second), body)
}

// waitSettled waits until count reaches at least n and then stops
// growing.
func (r *Runner) waitSettled(ctx context.Context, count func(context.Context) (int64, error), n int64) error {
	if _, err := CountUntil(ctx, n, 100*time.Millisecond, 2*time.Minute, count); err != nil {
		return err
	}
	return Settle(ctx, count)
}

// Settle waits until count gives the same figure twice in a row,
// settleInterval apart, for at most a minute: billing has stored whatever
// of the run's orders was still in the queue.
func Settle(ctx context.Context, count func(context.Context) (int64, error)) error {
	prev := int64(-1)
	for range int(time.Minute / settleInterval) {
		c, err := count(ctx)
		if err != nil {
			return fmt.Errorf("loadtest: count rows: %w", err)
		}
		if c == prev {
			return nil
		}
		prev = c
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(settleInterval):
		}
	}
	return errors.New("loadtest: orders still arriving after a minute")
}

// deleteOrders removes the run's orders of userIDs once billing has
// stored all it will (a run cut short leaves orders in the queue, which
// billing stores after the row has ended).
func (r *Runner) deleteOrders(ctx context.Context, db *pgx.Conn, userIDs ...string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := Settle(ctx, CountOrders(db, userIDs...)); err != nil {
		r.logf("cleanup: %v", err)
	}
	n, err := DeleteOrders(ctx, db, userIDs...)
	if err != nil {
		r.logf("cleanup: %v", err)
		return
	}
	r.logf("deleted the run's %s orders (%v)", Thousands(n), userIDs)
}

// --- c: billing draining a backlog vs a bare consumer ---

func (r *Runner) drainRow(ctx context.Context) []Row {
	const name, target = "c. drain 100,000 orders", ">= 0.80x bare"
	fail := func(err error) []Row { return []Row{ErrorRow(name, target, err)} }

	r.logf("c: bare consumer reference: %s orders through a private quorum queue into a scratch database", Thousands(BacklogOrders))
	ref, err := r.bareReference(ctx)
	if err != nil {
		return fail(err)
	}

	userID := OrderUserID(r.opt.RunID, "c")
	db, err := connect(ctx, r.env.Billing)
	if err != nil {
		return fail(err)
	}
	defer db.Close(context.WithoutCancel(ctx))
	defer r.deleteOrders(ctx, db, userID)

	billing, err := r.drainBilling(ctx, db, userID)
	if err != nil {
		return fail(err)
	}
	return []Row{{
		Name: name, Project: PerSecond(billing.Rate()) + " billing", Reference: PerSecond(ref.Rate()) + " bare",
		Ratio: Ratio(billing.Rate(), ref.Rate()), Target: target, Verdict: verdict(billing.Rate() >= 0.8*ref.Rate()),
		Note: fmt.Sprintf("billing: %s from `pm2 start` to the last row; bare consumer: %s from its start",
			Seconds(billing.Total), Seconds(ref.Total)),
	}}
}

func (r *Runner) bareReference(ctx context.Context) (Drain, error) {
	conn, err := broker.Dial(r.env.Test)
	if err != nil {
		return Drain{}, fmt.Errorf("loadtest: dial %s: %w", r.env.Test, err)
	}
	defer conn.Close()
	queue := TestQueue(r.opt.RunID, "drain")
	ch, err := conn.Channel()
	if err != nil {
		return Drain{}, fmt.Errorf("loadtest: channel: %w", err)
	}
	if err := DeclareTestQueue(ch, queue); err != nil {
		return Drain{}, err
	}
	_ = ch.Close()
	defer func() {
		if err := DeleteQueues(r.env.Test, queue); err != nil {
			r.logf("cleanup: %v", err)
		}
	}()
	body := OrderBody(OrderUserID(r.opt.RunID, "r"))
	if err := PublishBacklog(ctx, conn, queue, BacklogOrders, backlogWindow, func(i int) amqp.Publishing {
		return amqp.Publishing{ContentType: "application/json", MessageId: fmt.Sprintf("loadtest-%s-r-%d", r.opt.RunID, i), Body: body}
	}); err != nil {
		return Drain{}, err
	}

	scratch, err := CreateScratchDB(ctx, r.env.TestDB, r.opt.RunID)
	if err != nil {
		return Drain{}, err
	}
	defer func() {
		if err := DropScratchDB(context.WithoutCancel(ctx), r.env.TestDB, r.opt.RunID); err != nil {
			r.logf("cleanup: %v", err)
		}
	}()
	writer, err := connect(ctx, scratch)
	if err != nil {
		return Drain{}, err
	}
	defer writer.Close(context.WithoutCancel(ctx))
	counter, err := connect(ctx, scratch)
	if err != nil {
		return Drain{}, err
	}
	defer counter.Close(context.WithoutCancel(ctx))
	if _, err := writer.Exec(ctx, ScratchOrdersTable); err != nil {
		return Drain{}, fmt.Errorf("loadtest: scratch table: %w", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- BareConsumer(cctx, conn, writer, queue, BarePrefetch, BareBatch, BacklogOrders) }()
	d, err := CountUntil(ctx, BacklogOrders, pollInterval, 2*time.Minute, CountRows(counter))
	cancel()
	if cerr := <-done; err == nil && cerr != nil && !errors.Is(cerr, context.Canceled) {
		err = cerr
	}
	return d, err
}

func (r *Runner) drainBilling(ctx context.Context, db *pgx.Conn, userID string) (Drain, error) {
	conn, err := broker.Dial(r.env.Admin)
	if err != nil {
		return Drain{}, fmt.Errorf("loadtest: dial %s: %w", r.env.Admin, err)
	}
	defer conn.Close()

	r.logf("c: stopping %s and publishing %s orders into %s", BillingApp, Thousands(BacklogOrders), r.env.Queue)
	if r.opt.BillingStopped != "" {
		if err := os.WriteFile(r.opt.BillingStopped, nil, 0o600); err != nil {
			return Drain{}, fmt.Errorf("loadtest: %w", err)
		}
	}
	started := false
	defer func() {
		if started {
			return
		}
		// Whatever went wrong, billing runs again when the row ends.
		if err := PM2(context.WithoutCancel(ctx), "start", BillingApp); err != nil {
			r.logf("cleanup: %v", err)
			return
		}
		if r.opt.BillingStopped != "" {
			_ = os.Remove(r.opt.BillingStopped)
		}
	}()
	if err := PM2(ctx, "stop", BillingApp); err != nil {
		return Drain{}, err
	}
	body := OrderBody(userID)
	now := time.Now().UTC()
	if err := PublishBacklog(ctx, conn, r.env.Queue, BacklogOrders, backlogWindow, func(i int) amqp.Publishing {
		// What the gateway publishes (billingapi): the body, the order's
		// id as message_id, JSON, a timestamp, persistent.
		return amqp.Publishing{ContentType: "application/json", MessageId: fmt.Sprintf("loadtest-%s-c-%d", r.opt.RunID, i),
			Timestamp: now, AppId: "loadtest", Body: body}
	}); err != nil {
		return Drain{}, err
	}

	r.logf("c: starting %s on the backlog", BillingApp)
	start := time.Now()
	if err := PM2(ctx, "start", BillingApp); err != nil {
		return Drain{}, err
	}
	started = true
	if r.opt.BillingStopped != "" {
		_ = os.Remove(r.opt.BillingStopped)
	}
	d, err := CountUntil(ctx, BacklogOrders, pollInterval, 3*time.Minute, CountOrders(db, userID))
	d.Total = time.Since(start)
	return d, err
}

// --- d and e: the list and the search over a million movies ---

func (r *Runner) listRows(ctx context.Context) []Row {
	const (
		timeName, invName, gwName, searchName = "d. GET /api/movies (1M) time", "d. inventory peak RSS", "d. gateway peak RSS", "e. GET ?title= (100 hits) p50"
		timeTarget, rssTarget, searchTarget   = "< 2 s", "< 64 MiB", "< 15 ms"
	)
	fail := func(err error) []Row {
		return []Row{ErrorRow(timeName, timeTarget, err), ErrorRow(invName, rssTarget, err), ErrorRow(gwName, rssTarget, err), ErrorRow(searchName, searchTarget, err)}
	}
	db, err := connect(ctx, r.env.Inventory)
	if err != nil {
		return fail(err)
	}
	defer db.Close(context.WithoutCancel(ctx))
	r.logf("d: seeding %s movies (one INSERT ... generate_series)", Thousands(ListMovies))
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	err = SeedMoviesQuiet(sctx, db, r.opt.RunID, ListMovies)
	cancel()
	defer r.deleteMovies(ctx, db)
	if err != nil {
		return fail(err)
	}
	if err := Analyze(ctx, db, "movies"); err != nil {
		return fail(err)
	}
	seeded := time.Since(start)
	total, err := CountMovies(ctx, db)
	if err != nil {
		return fail(err)
	}
	r.logf("d: seeded in %s; movies holds %s rows", Seconds(seeded), Thousands(total))

	rows := r.listRow(ctx, db, total)
	return append(rows, r.searchRow(ctx, db))
}

func (r *Runner) listRow(ctx context.Context, db *pgx.Conn, total int64) []Row {
	const (
		timeName, invName, gwName = "d. GET /api/movies (1M) time", "d. inventory peak RSS", "d. gateway peak RSS"
		timeTarget, rssTarget     = "< 2 s", "< 64 MiB"
	)
	fail := func(err error) []Row {
		return []Row{ErrorRow(timeName, timeTarget, err), ErrorRow(invName, rssTarget, err), ErrorRow(gwName, rssTarget, err)}
	}
	r.logf("d: reference: the rows streamed from PostgreSQL to a JSON encoder")
	var sink objectCounter
	refTime, refN, err := StreamMovies(ctx, db, &sink)
	if err != nil {
		return fail(err)
	}
	invPID, err := PM2PID(ctx, InventoryApp)
	if err != nil {
		return fail(err)
	}
	gwPID, err := PM2PID(ctx, GatewayApp)
	if err != nil {
		return fail(err)
	}
	// A plain client, as curl: no Accept-Encoding, so the answer is the
	// JSON itself.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true, Proxy: nil}}
	defer client.CloseIdleConnections()
	var (
		times                      []time.Duration
		invPeak, gwPeak, bodyBytes int64
		problems                   []string
		complete                   int
	)
	for i := range listRequests {
		r.logf("d: GET /api/movies through the gateway (%d/%d)", i+1, listRequests)
		sampler := StartPeakSampler(invPID, gwPID)
		got, err := r.getList(ctx, client)
		peaks, serr := sampler.Stop()
		if err != nil {
			return fail(err)
		}
		if serr != nil {
			return fail(serr)
		}
		// A wrong answer still has a time and a memory peak; it fails the
		// time, with the reason in the note. The peaks count when at least
		// one answer was the whole list.
		switch {
		case got.status != http.StatusOK:
			problems = append(problems, fmt.Sprintf("request %d: status %d after %s", i+1, got.status, Seconds(got.elapsed)))
		case got.movies != total:
			problems = append(problems, fmt.Sprintf("request %d: %d movies in the list, %d in the table", i+1, got.movies, total))
		default:
			complete++
		}
		times = append(times, got.elapsed)
		invPeak, gwPeak, bodyBytes = max(invPeak, peaks[invPID]), max(gwPeak, peaks[gwPID]), max(bodyBytes, got.bytes)
	}
	med := Median(slices.Clone(times))
	note := fmt.Sprintf("%s movies, %.0f MB of JSON; times %v; the reference streamed %s rows; RSS: the highest of %d requests",
		Thousands(total), float64(bodyBytes)/1e6, roundAll(times), Thousands(refN), listRequests)
	if len(problems) > 0 {
		note += "; " + strings.Join(problems, "; ")
	}
	ok := len(problems) == 0
	whole := complete > 0
	const limit = 64 << 20
	return []Row{
		{Name: timeName, Project: Seconds(med), Reference: Seconds(refTime) + " pg+encoder", Ratio: Ratio(float64(med), float64(refTime)),
			Target: timeTarget, Verdict: verdict(ok && med < 2*time.Second), Note: note},
		{Name: invName, Project: MiB(invPeak), Reference: "-", Ratio: "-", Target: rssTarget, Verdict: verdict(whole && invPeak < limit)},
		{Name: gwName, Project: MiB(gwPeak), Reference: "-", Ratio: "-", Target: rssTarget, Verdict: verdict(whole && gwPeak < limit)},
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}

// listAnswer is one GET /api/movies as the client saw it.
type listAnswer struct {
	status        int
	elapsed       time.Duration // to the last byte
	movies, bytes int64
}

// getList reads the whole list once.
func (r *Runner) getList(ctx context.Context, client *http.Client) (listAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.env.GatewayURL+"/api/movies", nil)
	if err != nil {
		return listAnswer{}, fmt.Errorf("loadtest: %w", err)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return listAnswer{}, fmt.Errorf("loadtest: GET /api/movies: %w", err)
	}
	defer resp.Body.Close()
	var c objectCounter
	if _, err := io.Copy(&c, resp.Body); err != nil {
		return listAnswer{}, fmt.Errorf("loadtest: GET /api/movies: reading the body: %w", err)
	}
	return listAnswer{status: resp.StatusCode, elapsed: time.Since(start), movies: c.n, bytes: c.bytes}, nil
}

func (r *Runner) searchRow(ctx context.Context, db *pgx.Conn) Row {
	const name, target = "e. GET ?title= (100 hits) p50", "< 15 ms"
	r.logf("e: reference: the search in SQL, %d times", searchRefRuns)
	var refTimes []time.Duration
	hits := 0
	for range searchRefRuns {
		d, n, err := SearchQuery(ctx, db, SearchTerm)
		if err != nil {
			return ErrorRow(name, target, err)
		}
		refTimes, hits = append(refTimes, d), n
	}
	path := "/api/movies?title=" + SearchTerm
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(r.env.GatewayURL + path)
	if err != nil {
		return ErrorRow(name, target, fmt.Errorf("loadtest: GET %s: %w", path, err))
	}
	var c objectCounter
	_, err = io.Copy(&c, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return ErrorRow(name, target, fmt.Errorf("loadtest: GET %s: status %d, %v", path, resp.StatusCode, err))
	}
	if c.n != int64(hits) {
		return ErrorRow(name, target, fmt.Errorf("GET %s found %d movies, SQL %d", path, c.n, hits))
	}
	r.logf("e: wrk -c1 GET %s (%d hits)", path, hits)
	gw, err := Wrk{URL: r.env.GatewayURL, Connections: 1, Threads: 1, Duration: r.dur(8 * time.Second),
		Script: FixedGetScript(path), Dir: r.opt.Dir}.Run(ctx)
	if err != nil {
		return ErrorRow(name, target, err)
	}
	refP50 := Median(refTimes)
	note := fmt.Sprintf("%d hits; %d requests one after the other", hits, gw.Requests)
	if gw.StatusErrors+gw.SocketErrors > 0 {
		note += fmt.Sprintf("; %d non-2xx, %d socket errors", gw.StatusErrors, gw.SocketErrors)
	}
	return Row{Name: name, Project: Millis(gw.P50()), Reference: Millis(refP50) + " SQL", Ratio: Ratio(float64(gw.P50()), float64(refP50)),
		Target: target, Verdict: verdict(gw.StatusErrors+gw.SocketErrors == 0 && gw.P50() < 15*time.Millisecond), Note: note}
}
