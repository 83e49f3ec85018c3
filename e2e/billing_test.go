//go:build e2e

package e2e

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"moviestream/pkg/broker"
	"moviestream/pkg/config"
	"moviestream/pkg/testenv"
)

const order = `{"user_id":"3","number_of_items":"5","total_amount":"180"}`

func orderRows(t *testing.T, messageID string) int64 {
	t.Helper()
	var n int64
	if err := billingDB.Raw(`SELECT count(*) FROM orders WHERE message_id = ?`, messageID).Scan(&n).Error; err != nil {
		t.Fatalf("count orders: %v", err)
	}
	return n
}

func uniqueKey(t *testing.T) string {
	return strings.ReplaceAll(t.Name(), "/", "-") + "-" + time.Now().UTC().Format("20060102T150405.000000000")
}

func postOrder(t *testing.T, key string) {
	t.Helper()
	r := do(t, http.MethodPost, "/api/billing", jsonType, []byte(order), "Idempotency-Key", key)
	var body struct {
		Message   string `json:"message"`
		MessageID string `json:"message_id"`
	}
	r.json(t, &body)
	if r.Status != http.StatusOK || body.Message != "Message posted" || body.MessageID != key {
		t.Fatalf("POST /api/billing = %d %s", r.Status, r.Body)
	}
}

func TestBillingCreatesExactlyOneOrder(t *testing.T) {
	key := uniqueKey(t)
	postOrder(t, key)
	postOrder(t, key) // a client retry with the same key
	testenv.WaitFor(t, 30*time.Second, "order row", func() bool { return orderRows(t, key) == 1 })

	var row struct {
		UserID        string
		NumberOfItems int
		TotalAmount   string
	}
	if err := billingDB.Raw(`SELECT user_id, number_of_items, total_amount::text FROM orders WHERE message_id = ?`, key).Scan(&row).Error; err != nil {
		t.Fatal(err)
	}
	if row.UserID != "3" || row.NumberOfItems != 5 || row.TotalAmount != "180.00" {
		t.Fatalf("row = %+v", row)
	}
	// Give a duplicate time to show up, bounded, then check there is none.
	r := do(t, http.MethodPost, "/api/billing/", jsonType, []byte(order), "Idempotency-Key", key+"-fence")
	if r.Status != http.StatusOK {
		t.Fatalf("fence POST = %d", r.Status)
	}
	testenv.WaitFor(t, 30*time.Second, "fence row", func() bool { return orderRows(t, key+"-fence") == 1 })
	if n := orderRows(t, key); n != 1 {
		t.Fatalf("orders for %s = %d, want exactly 1", key, n)
	}
}

func TestBillingWaitsInQueueWhileBillingIsStopped(t *testing.T) {
	pm2(t, "stop", "billing_app")
	t.Cleanup(func() { pm2(t, "start", "billing_app") })

	key := uniqueKey(t)
	postOrder(t, key) // 200 although billing is down: the queue holds it

	// The message waits in the queue: visible through the management API.
	testenv.WaitFor(t, 10*time.Second, "message in billing_queue", func() bool { return queueDepth(t) >= 1 })
	if n := orderRows(t, key); n != 0 {
		t.Fatalf("order written while billing is stopped (%d rows)", n)
	}

	pm2(t, "start", "billing_app")
	testenv.WaitFor(t, 60*time.Second, "order after billing restart", func() bool { return orderRows(t, key) == 1 })
}

func TestBillingRejectsBadOrders(t *testing.T) {
	tests := []struct {
		name, ctype, body string
		headers           []string
		status            int
		code              string
	}{
		{"zero items", jsonType, `{"user_id":"3","number_of_items":"0","total_amount":"1"}`, nil, 400, "validation_failed"},
		{"negative total", jsonType, `{"user_id":"3","number_of_items":1,"total_amount":-1}`, nil, 400, "validation_failed"},
		{"three decimals", jsonType, `{"user_id":"3","number_of_items":1,"total_amount":"1.999"}`, nil, 400, "validation_failed"},
		{"missing user", jsonType, `{"number_of_items":1,"total_amount":1}`, nil, 400, "validation_failed"},
		{"malformed", jsonType, `{"user_id":`, nil, 400, "invalid_json"},
		{"array", jsonType, `[]`, nil, 400, "invalid_json"},
		{"text/plain", "text/plain", order, nil, 415, "unsupported_media_type"},
		{"too large", jsonType, `{"pad":"` + strings.Repeat("x", 70_000) + `"}`, nil, 413, "payload_too_large"},
		{"bad key", jsonType, order, []string{"Idempotency-Key", "has space"}, 400, "invalid_header"},
	}
	before := queueDepth(t)
	for _, tt := range tests {
		r := do(t, http.MethodPost, "/api/billing", tt.ctype, []byte(tt.body), tt.headers...)
		if r.Status != tt.status || r.errCode() != tt.code {
			t.Errorf("%s: %d %q, want %d %q (%s)", tt.name, r.Status, r.errCode(), tt.status, tt.code, r.Body)
		}
	}
	if r := do(t, http.MethodGet, "/api/billing", "", nil); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("GET /api/billing = %d, want 405", r.Status)
	}
	if after := queueDepth(t); after > before {
		t.Errorf("bad orders were published: queue depth %d -> %d", before, after)
	}
}

// queueDepth asks the management API, as a user watching the UI would.
func queueDepth(t *testing.T) int {
	t.Helper()
	return billingQueue(t).Messages
}

// queueStats is what the management API says of billing_queue.
type queueStats struct {
	Messages  int `json:"messages"`
	Consumers int `json:"consumers"`
}

func billingQueue(t *testing.T) queueStats {
	t.Helper()
	var env config.Reader
	url := "http://" + net.JoinHostPort(managementHost(broker.ConfigFromEnv(&env, "RABBITMQ_ADMIN", "e2e")), env.String("RABBITMQ_MANAGEMENT_PORT")) + "/api/queues/" +
		env.String("RABBITMQ_VHOST") + "/" + env.String("RABBITMQ_QUEUE")
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth(env.String("RABBITMQ_ADMIN_USER"), env.String("RABBITMQ_ADMIN_PASSWORD"))
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("management API: %v", err)
	}
	defer resp.Body.Close()
	var q queueStats
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("management API %s: %d", url, resp.StatusCode)
	}
	if err := jsonDecode(resp, &q); err != nil {
		t.Fatal(err)
	}
	return q
}

// managementHost is where the management UI of cfg's broker listens: the
// host of its first node (make up: loopback).
func managementHost(cfg broker.Config) string {
	if len(cfg.Addrs) == 0 {
		return "127.0.0.1"
	}
	host, _, err := net.SplitHostPort(cfg.Addrs[0])
	if err != nil {
		return "127.0.0.1"
	}
	return host
}
