//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/broker"
	"moviestream/pkg/config"
	"moviestream/pkg/testenv"
)

// wait bounds every wait of these tests; Prometheus scrapes every 5 s.
const wait = 60 * time.Second

// TestMetadata: every service answers GET /metadata and /1.0/metadata
// (the gateway on its public port, inventory on its admin listener,
// billing on its health port); /metrics is on the admin listeners and
// never on the public ports.
func TestMetadata(t *testing.T) {
	admin := map[string]string{
		"gateway":   "http://" + os.Getenv("GATEWAY_ADMIN_ADDR"),
		"inventory": "http://" + os.Getenv("INVENTORY_ADMIN_ADDR"),
		"billing":   "http://127.0.0.1:" + os.Getenv("BILLING_HEALTH_PORT"),
	}
	for name, base := range map[string]string{"gateway": gatewayURL, "inventory": admin["inventory"], "billing": admin["billing"]} {
		for _, path := range []string{"/metadata", "/1.0/metadata"} {
			r := send(t, base, http.MethodGet, path, "", nil, nil)
			if r.Status != http.StatusOK {
				t.Errorf("%s GET %s = %d %s", name, path, r.Status, r.Body)
				continue
			}
			wantMetadata(t, r, name, "none")
		}
	}
	for name, base := range admin {
		r := send(t, base, http.MethodGet, "/metrics", "", nil, nil)
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), "go_goroutines") {
			t.Errorf("%s admin GET /metrics = %d", name, r.Status)
		}
	}
	for name, base := range map[string]string{"gateway": gatewayURL, "inventory": "http://127.0.0.1:" + os.Getenv("INVENTORY_PORT")} {
		if r := send(t, base, http.MethodGet, "/metrics", "", nil, nil); r.Status != http.StatusNotFound {
			t.Errorf("%s public GET /metrics = %d, want 404", name, r.Status)
		}
	}
}

// TestPrometheus: Prometheus scrapes every target, counts exactly the
// orders sent through the gateway, and raises BillingDeadLetters for a
// poison message published straight to billing_queue. The same test
// follows one request id from the gateway into billing's log.
func TestPrometheus(t *testing.T) {
	prom := &promClient{base: "http://127.0.0.1:" + os.Getenv("PROMETHEUS_PORT")}

	jobs := []string{"gateway", "inventory", "billing", "rabbitmq", "rabbitmq_queues", "prometheus"}
	testenv.WaitFor(t, wait, "every Prometheus target up", func() bool {
		down := prom.targetsDown(t, jobs)
		return len(down) == 0
	})

	// Nothing left in billing_queue from earlier tests, then the baseline
	// from a scrape taken after that.
	testenv.WaitFor(t, wait, "billing_queue empty", func() bool {
		v, ok := prom.value(t, `sum(rabbitmq_detailed_queue_messages{queue="billing_queue"})`)
		return ok && v == 0
	})
	before, _ := prom.freshValue(t, "moviestream_orders_written_total", time.Now())

	const n = 12
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%d", uniqueKey(t), i)
		postOrder(t, keys[i])
	}
	testenv.WaitFor(t, wait, "the orders written", func() bool {
		var got int64
		if err := billingDB.Raw(`SELECT count(*) FROM orders WHERE message_id IN ?`, keys).Scan(&got).Error; err != nil {
			t.Fatal(err)
		}
		return got == n
	})
	// A little ahead: billing counts an order right after its commit.
	after, _ := prom.freshValue(t, "moviestream_orders_written_total", time.Now().Add(200*time.Millisecond))
	if after-before != n {
		t.Errorf("moviestream_orders_written_total grew by %v, want exactly %d (%v -> %v)", after-before, n, before, after)
	}

	// One id end to end: an order reusing a key with another body is
	// dead-lettered by billing, whose log line carries the gateway's id.
	reqID := "e2e-trace-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	r := do(t, http.MethodPost, "/api/billing", jsonType, []byte(`{"user_id":"3","number_of_items":"1","total_amount":"1"}`),
		"Idempotency-Key", keys[0], "X-Request-ID", reqID)
	if r.Status != http.StatusOK {
		t.Fatalf("POST /api/billing (reused key) = %d %s", r.Status, r.Body)
	}
	testenv.WaitFor(t, wait, "billing's log line with request_id "+reqID, func() bool {
		return pm2LogHas(t, "billing", `"request_id":"`+reqID+`"`, `"message_id":"`+keys[0]+`"`, `"reason_class":"key_reused"`)
	})

	// A poison message straight into the queue: billing dead-letters it
	// and the alert goes active.
	deadBefore, _ := prom.freshValue(t, `moviestream_dead_lettered_total{reason="invalid_order"}`, time.Now())
	publishPoison(t, "e2e-poison-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	testenv.WaitFor(t, wait, `moviestream_dead_lettered_total{reason="invalid_order"} +1`, func() bool {
		v, _, ok := prom.latest(t, `moviestream_dead_lettered_total{reason="invalid_order"}`)
		return ok && v-deadBefore >= 1
	})
	testenv.WaitFor(t, wait, "alert BillingDeadLetters active", func() bool {
		return prom.alertActive(t, "BillingDeadLetters", "invalid_order")
	})
}

// publishPoison publishes an order billing can never write, with publisher
// confirms, to billing_queue through the default exchange.
func publishPoison(t *testing.T, id string) {
	t.Helper()
	var env config.Reader
	cfg := broker.ConfigFromEnv(&env, "GATEWAY_RABBITMQ", "e2e-prometheus")
	queue := env.String("RABBITMQ_QUEUE")
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	conn, err := broker.Dial(cfg)
	if err != nil {
		t.Fatalf("dial rabbitmq: %v", err)
	}
	defer conn.Close()
	ch, err := broker.NewConfirmChannel(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = ch.Publish(ctx, "", queue, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: id, CorrelationId: id,
		Body: []byte(`{"user_id":"","number_of_items":1,"total_amount":1}`),
	})
	if err != nil {
		t.Fatalf("publish poison: %v", err)
	}
}

// pm2LogHas reports whether one line of service's PM2 output log holds
// every one of parts.
func pm2LogHas(t *testing.T, service string, parts ...string) bool {
	t.Helper()
	files, _ := filepath.Glob("/root/.pm2/logs/" + service + "-app-out*.log")
	if len(files) == 0 {
		t.Fatalf("no PM2 log of %s_app under /root/.pm2/logs", service)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
	lines:
		for line := range strings.Lines(string(data)) {
			for _, p := range parts {
				if !strings.Contains(line, p) {
					continue lines
				}
			}
			return true
		}
	}
	return false
}

type promClient struct{ base string }

func (p *promClient) get(t *testing.T, path string, q url.Values, v any) {
	t.Helper()
	resp, err := client.Get(p.base + path + "?" + q.Encode())
	if err != nil {
		t.Fatalf("prometheus %s: %v", path, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := jsonDecode(resp, &body); err != nil || body.Status != "success" {
		t.Fatalf("prometheus %s %v: status %d %s %v", path, q, resp.StatusCode, body.Error, err)
	}
	if err := json.Unmarshal(body.Data, v); err != nil {
		t.Fatalf("prometheus %s: %v", path, err)
	}
}

// targetsDown returns the jobs without a healthy active target.
func (p *promClient) targetsDown(t *testing.T, jobs []string) []string {
	t.Helper()
	var data struct {
		ActiveTargets []struct {
			Labels    map[string]string `json:"labels"`
			Health    string            `json:"health"`
			LastError string            `json:"lastError"`
		} `json:"activeTargets"`
	}
	p.get(t, "/api/v1/targets", url.Values{"state": {"active"}}, &data)
	up := map[string]bool{}
	for _, tg := range data.ActiveTargets {
		if tg.Health == "up" {
			up[tg.Labels["job"]] = true
		}
	}
	var down []string
	for _, j := range jobs {
		if !up[j] {
			down = append(down, j)
		}
	}
	if len(down) > 0 {
		t.Logf("targets not up yet: %v", down)
	}
	return down
}

// value runs an instant query that yields at most one series.
func (p *promClient) value(t *testing.T, query string) (float64, bool) {
	t.Helper()
	var data struct {
		Result []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	p.get(t, "/api/v1/query", url.Values{"query": {query}}, &data)
	if len(data.Result) != 1 {
		return 0, false
	}
	s, _ := data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

// latest returns the newest raw sample of selector (one series) and its
// scrape time, read together from a range selector.
func (p *promClient) latest(t *testing.T, selector string) (float64, time.Time, bool) {
	t.Helper()
	var data struct {
		Result []struct {
			Values [][2]any `json:"values"`
		} `json:"result"`
	}
	p.get(t, "/api/v1/query", url.Values{"query": {selector + "[30s]"}}, &data)
	if len(data.Result) != 1 || len(data.Result[0].Values) == 0 {
		return 0, time.Time{}, false
	}
	last := data.Result[0].Values[len(data.Result[0].Values)-1]
	ts, _ := last[0].(float64)
	s, _ := last[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, time.UnixMilli(int64(ts * 1000)), err == nil
}

// freshValue waits for a sample of selector scraped after since and
// returns it. The sample time is the scrape's, so the value includes
// everything the service counted before since.
func (p *promClient) freshValue(t *testing.T, query string, since time.Time) (float64, time.Time) {
	t.Helper()
	var (
		v  float64
		at time.Time
	)
	testenv.WaitFor(t, wait, "a scrape of "+query+" after "+since.Format(time.RFC3339Nano), func() bool {
		var ok bool
		v, at, ok = p.latest(t, query)
		return ok && at.After(since)
	})
	return v, at
}

// alertActive reports whether alert is pending or firing with the reason
// label reason.
func (p *promClient) alertActive(t *testing.T, alert, reason string) bool {
	t.Helper()
	var data struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	p.get(t, "/api/v1/alerts", nil, &data)
	for _, a := range data.Alerts {
		if a.Labels["alertname"] == alert && a.Labels["reason"] == reason && (a.State == "firing" || a.State == "pending") {
			return true
		}
	}
	return false
}
