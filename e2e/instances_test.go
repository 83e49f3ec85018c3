//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"moviestream/pkg/testenv"
)

// TestTwoBillingProcessesShareTheQueue: README's "Several billing
// consumers" on one host. With BILLING_INSTANCES=2, PM2 runs two billing
// processes, each healthy on its own port and consuming billing_queue; the
// orders sent meanwhile are written once each, by both of them. Back to one
// process afterwards.
func TestTwoBillingProcessesShareTheQueue(t *testing.T) {
	deploy := func(instances string) {
		t.Helper()
		cmd := "bash scripts/deploy-app.sh billing && bash scripts/wait-healthy.sh 60 billing"
		if code, out := script(t, []string{"BILLING_INSTANCES=" + instances}, cmd); code != 0 {
			t.Fatalf("deploy billing with BILLING_INSTANCES=%s (exit %d):\n%s", instances, code, out)
		}
	}
	t.Cleanup(func() { deploy("1") })
	deploy("2")

	if got := billingProcesses(t); got != 2 {
		t.Fatalf("PM2 runs %d billing_app processes, want 2", got)
	}
	testenv.WaitFor(t, 30*time.Second, "two consumers on billing_queue", func() bool {
		return billingQueue(t).Consumers == 2
	})

	base, err := strconv.Atoi(os.Getenv("BILLING_HEALTH_PORT"))
	if err != nil {
		t.Fatal(err)
	}
	before := []float64{ordersWritten(t, base), ordersWritten(t, base+1)}
	prefix := fmt.Sprintf("two-processes-%d-", time.Now().UnixNano())
	const orders = 200
	for i := range orders {
		key := prefix + strconv.Itoa(i)
		if r := do(t, http.MethodPost, "/api/billing", jsonType, []byte(order), "Idempotency-Key", key); r.Status != 200 {
			t.Fatalf("order %d: %d %s", i, r.Status, r.Body)
		}
	}
	var rows int64
	testenv.WaitFor(t, 30*time.Second, "every order written", func() bool {
		if err := billingDB.Raw(`SELECT count(*) FROM orders WHERE message_id LIKE ?`, prefix+"%").Scan(&rows).Error; err != nil {
			t.Fatalf("count orders: %v", err)
		}
		return rows >= orders
	})
	if rows != orders {
		t.Errorf("%d rows for %d orders", rows, orders)
	}
	for i, port := range []int{base, base + 1} {
		if wrote := ordersWritten(t, port) - before[i]; wrote == 0 {
			t.Errorf("billing on port %d wrote none of the %d orders: the queue was not shared", port, orders)
		} else {
			t.Logf("billing on port %d wrote %.0f orders", port, wrote)
		}
	}
}

// billingProcesses counts the online billing_app processes in root's PM2.
func billingProcesses(t *testing.T) int {
	t.Helper()
	n := 0
	for _, a := range pm2Apps(t) {
		if a.Name == "billing_app" && a.Env.Status == "online" {
			n++
		}
	}
	return n
}

var ordersWrittenLine = regexp.MustCompile(`(?m)^moviestream_orders_written_total(?:\{[^}]*\})? ([0-9.e+]+)$`)

// ordersWritten reads moviestream_orders_written_total from the billing
// process serving health on port.
func ordersWritten(t *testing.T, port int) float64 {
	t.Helper()
	r := send(t, "http://127.0.0.1:"+strconv.Itoa(port), http.MethodGet, "/metrics", "", nil, nil)
	m := ordersWrittenLine.FindSubmatch(r.Body)
	if r.Status != http.StatusOK || m == nil {
		t.Fatalf("billing on port %d: GET /metrics = %d without moviestream_orders_written_total", port, r.Status)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
