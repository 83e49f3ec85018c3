//go:build fault

package fault

import (
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"moviestream/e2e/testinfra"
	"moviestream/pkg/testenv"
)

// outageHold is how long TestPostgresOutage keeps the database down.
const outageHold = 6 * time.Second

// TestPostgresOutage: while PostgreSQL is down, billing holds its messages
// unacked (none dead-lettered), retries with backoff and few log lines, and
// writes them once the database is back; inventory answers 503 JSON and
// recovers by itself. No process is restarted.
func TestPostgresOutage(t *testing.T) {
	s := newStack(t)
	s.startBilling()
	s.startGateway()
	s.startInventory()
	waitStatus(t, 30*time.Second, s.billingURL("/ready"), http.StatusOK)
	waitStatus(t, 30*time.Second, s.gatewayURL("/ready"), http.StatusOK)
	waitStatus(t, 30*time.Second, s.inventoryURL("/api/movies"), http.StatusOK)
	if r := do(http.MethodPost, s.gatewayURL("/api/movies"), jsonType, []byte(`{"title":"Alien","description":"In space."}`)); r.status != http.StatusCreated {
		t.Fatalf("create movie: %s", r)
	}
	pids := []int{s.billing.Pid(), s.gateway.Pid(), s.inventory.Pid()}

	s.pg.Stop(t, "fast")
	down := time.Now()

	// Inventory: 503 JSON, directly and through the gateway, at once.
	for _, url := range []string{s.inventoryURL("/api/movies"), s.gatewayURL("/api/movies"), s.gatewayURL("/api/movies/1")} {
		r := get(url)
		if r.status != http.StatusServiceUnavailable || r.errCode() != "service_unavailable" || r.took > fastLimit {
			t.Errorf("GET %s with the database down: %s after %s, want 503 service_unavailable within %s", url, r, r.took, fastLimit)
		}
	}
	if r := do(http.MethodPost, s.inventoryURL("/api/movies"), jsonType, []byte(`{"title":"Heat"}`)); r.status != http.StatusServiceUnavailable {
		t.Errorf("POST /api/movies with the database down: %s, want 503", r)
	}
	if r := get(s.inventoryURL("/health")); r.status != http.StatusOK {
		t.Errorf("inventory /health with the database down: %s", r)
	}

	// Billing: orders are accepted (the queue holds them) and delivered to
	// billing, which holds them unacked instead of dead-lettering them.
	const n = 40
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("pg-down-%d", i)
		body, _, _, _ := orderBody(i)
		if r := s.postOrder(keys[i], body); r.status != http.StatusOK {
			t.Fatalf("POST /api/billing with billing's database down: %s", r)
		}
	}
	testenv.WaitFor(t, 15*time.Second, "orders delivered to billing", func() bool {
		main, _ := s.ready(t)
		return main == 0
	})
	testenv.WaitFor(t, 15*time.Second, "billing retrying the write", func() bool {
		return s.billing.CountLog("database unavailable, holding batch unacked") >= 1
	})
	// The outage lasts a while on purpose (this is the fault, not a wait
	// for a condition): long enough to see billing back off rather than
	// spin or flood its log.
	cpuBefore := s.billing.CPUTime(t)
	pause(outageHold)
	cpu := s.billing.CPUTime(t) - cpuBefore
	if _, dead := s.ready(t); dead != 0 {
		t.Fatalf("%d messages dead-lettered during a database outage, want 0", dead)
	}
	logBefore := s.billing.CountLog(`"level":"WARN"`) + s.billing.CountLog(`"level":"ERROR"`)
	if cpu > outageHold/10 {
		t.Errorf("billing used %s of CPU in %s of database outage: a busy loop?", cpu, outageHold)
	}

	s.pg.Start(t)
	outage := time.Since(down)
	written := s.requireOrders(t, 15*time.Second, keys...)
	movies := waitStatus(t, 10*time.Second, s.inventoryURL("/api/movies"), http.StatusOK)
	logLines := s.billing.CountLog(`"level":"WARN"`) + s.billing.CountLog(`"level":"ERROR"`)
	if r := get(s.gatewayURL("/api/movies/1")); r.status != http.StatusOK {
		t.Errorf("movie created before the outage: %s", r)
	}

	// Backoff: one line when the outage starts, then one every 20 attempts
	// (capped at 5s apart), so a long outage logs a line every ~100s.
	if logBefore > 3 {
		t.Errorf("billing logged %d warnings/errors for a %s outage: flooding", logLines, outage.Round(time.Second))
	}
	for i, p := range []*testinfra.Proc{s.billing, s.gateway, s.inventory} {
		if !p.Running() || p.Pid() != pids[i] {
			t.Errorf("%s restarted or died during the outage", p.Name)
		}
	}
	// Stopped, billing returns whatever it has not acked: nothing must be.
	if code, _ := s.billing.Stop(t, syscall.SIGINT, 30*time.Second); code != 0 {
		t.Errorf("billing exit code %d after SIGINT, want 0", code)
	}
	if main, dead := s.ready(t); main != 0 || dead != 0 {
		t.Errorf("after the outage: %s holds %d, %s holds %d; want both empty", queue, main, dlq, dead)
	}
	t.Logf("postgres down %s: inventory 503 JSON; %d orders delivered to billing and held unacked, 0 dead-lettered; billing used %s CPU and logged %d warnings during the outage (%d in all); after the restart: orders written in %s, inventory 200 in %s",
		outage.Round(time.Millisecond), n, cpu, logBefore, logLines, written.Round(time.Millisecond), movies.Round(time.Millisecond))
}

// TestStartWhileDependenciesDown: services started while PostgreSQL and
// RabbitMQ are down keep running (health 200, not ready), and become ready
// by themselves once both come up; PM2 never sees them exit.
func TestStartWhileDependenciesDown(t *testing.T) {
	s := newStack(t)
	s.pg.Stop(t, "fast")
	s.rmq.Stop(t)

	s.startBilling()
	s.startGateway()
	s.startInventory()
	for _, url := range []string{s.billingURL("/health"), s.gatewayURL("/health"), s.inventoryURL("/health")} {
		waitStatus(t, 10*time.Second, url, http.StatusOK)
	}
	testenv.WaitFor(t, 15*time.Second, "retries in the logs", func() bool {
		return s.billing.CountLog("database not reachable yet") >= 1 &&
			s.inventory.CountLog("database not reachable yet") >= 1 &&
			s.gateway.CountLog("rabbitmq not reachable") >= 1
	})
	for _, p := range []*testinfra.Proc{s.billing, s.gateway, s.inventory} {
		if !p.Running() {
			t.Fatalf("%s exited while its dependencies were down:\n%s", p.Name, p.LogTail(20))
		}
	}
	for url, want := range map[string]int{
		s.billingURL("/ready"):        http.StatusServiceUnavailable,
		s.gatewayURL("/ready"):        http.StatusServiceUnavailable,
		s.inventoryURL("/api/movies"): http.StatusServiceUnavailable,
	} {
		if r := get(url); r.status != want {
			t.Errorf("GET %s with dependencies down: %s, want %d", url, r, want)
		}
	}
	s.expect503Fast(t, "start-down-0", fastLimit)

	s.pg.Start(t)
	inventoryReady := waitStatus(t, 15*time.Second, s.inventoryURL("/api/movies"), http.StatusOK)
	s.rmq.Start(t)
	billingReady := s.sinceBrokerBack(waitStatus(t, 15*time.Second, s.billingURL("/ready"), http.StatusOK))
	gatewayReady := s.sinceBrokerBack(waitStatus(t, 15*time.Second, s.gatewayURL("/ready"), http.StatusOK))
	r, _ := s.postUntilOK("start-down-1", 1, 10*time.Second)
	if r.status != http.StatusOK {
		t.Fatalf("POST /api/billing once everything is up: %s", r)
	}
	s.requireOrders(t, 15*time.Second, "start-down-1")
	for _, p := range []*testinfra.Proc{s.billing, s.gateway, s.inventory} {
		if code, took := p.Stop(t, syscall.SIGINT, 30*time.Second); code != 0 {
			t.Errorf("%s exit code %d after SIGINT (%s), want 0", p.Name, code, took)
		}
	}
	t.Logf("started with PostgreSQL and RabbitMQ down: all three alive, /health 200, not ready; inventory ready %s after PostgreSQL was back; billing %s and gateway %s after RabbitMQ listened again",
		inventoryReady.Round(time.Millisecond), billingReady.Round(time.Millisecond), gatewayReady.Round(time.Millisecond))
}
