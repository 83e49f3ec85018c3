//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"moviestream/pkg/testenv"
)

// TestTwoBillingProcessesShareTheQueue: README's "Several billing
// consumers" on one host, done as README says: BILLING_INSTANCES=2 in the
// .env file, then a deploy. PM2 runs two billing processes, each healthy on
// its own port and consuming billing_queue; the orders sent meanwhile are
// written once each, by both of them. Back to one process afterwards.
func TestTwoBillingProcessesShareTheQueue(t *testing.T) {
	deploy := func(file string) {
		t.Helper()
		// The test process has .env's BILLING_INSTANCES in its environment
		// (config.Load), where it would win over the file's.
		cmd := "env -u BILLING_INSTANCES bash scripts/deploy-app.sh billing && " +
			"env -u BILLING_INSTANCES bash scripts/wait-healthy.sh 60 billing"
		if code, out := script(t, []string{"ENV_FILE=" + file}, cmd); code != 0 {
			t.Fatalf("deploy billing with ENV_FILE=%s (exit %d):\n%s", file, code, out)
		}
	}
	two := writeEnvWith(t, "BILLING_INSTANCES", "2")
	t.Cleanup(func() { deploy(envFile) })
	deploy(two)

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

// writeEnvWith writes a copy of .env with key set to value under build/
// (the services' user must read it: deploy-app.sh checks), removed when the
// test ends.
func writeEnvWith(t *testing.T, key, value string) string {
	t.Helper()
	data, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^` + key + `=.*$`)
	if !line.Match(data) {
		t.Fatalf("%s has no %s line", envFile, key)
	}
	dir := filepath.Join(repoRoot, "build")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "test-"+strings.ToLower(key)+".env")
	if err := os.WriteFile(file, line.ReplaceAll(data, []byte(key+"="+value)), 0o640); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(file) })
	return file
}
