//go:build topology

package topology

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/e2e/testinfra"
	"moviestream/pkg/broker"
	"moviestream/pkg/testenv"
)

// TestTopology runs every check in order, as the user's walkthrough goes:
// a failed check fails alone and the next ones still run.
func TestTopology(t *testing.T) {
	runID := time.Now().UTC().Format("20060102T150405") + "-" + strconv.Itoa(os.Getpid())
	walkMovies(t, runID)
	walkBilling(t, runID)
	checkPostgresIsolation(t)
	checkRabbitMQLogins(t)
	checkSystemUser(t)
	checkListeners(t)
	checkConfigFiles(t)
}

// walkMovies: the gateway answers at its VM address and proxies movie CRUD
// to inventory-vm.
func walkMovies(t *testing.T, runID string) {
	c := cfg
	check(t, "gateway answers /health at "+c.gatewayIP, func(t *testing.T) {
		if r := do(t, http.MethodGet, c.gatewayURL+"/health", nil); r.Status != http.StatusOK {
			t.Fatalf("GET /health = %s", show(r))
		}
	})
	check(t, "gateway is connected to RabbitMQ on billing-vm (/ready)", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, c.gatewayURL+"/ready", nil)
		if err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 30*time.Second, "GET /ready = 200", func() bool {
			r, err := testenv.Send(client, req)
			return err == nil && r.Status == http.StatusOK
		})
	})

	type movie struct {
		ID    int64  `json:"id"`
		Title string `json:"title"`
	}
	title := "Topology " + runID
	moviePath := c.gatewayURL + "/api/movies/0" // until POST gives an id
	// expectMovie checks the status and, for 200 and 201, the title.
	expectMovie := func(t *testing.T, r testenv.Response, status int, title string) movie {
		t.Helper()
		var m movie
		if r.Status != status {
			t.Fatalf("got %s, want %d", show(r), status)
		}
		if decode(t, r, &m); m.Title != title {
			t.Fatalf("title %q, want %q", m.Title, title)
		}
		return m
	}
	check(t, "POST /api/movies -> 201 with an id", func(t *testing.T) {
		r := do(t, http.MethodPost, c.gatewayURL+"/api/movies",
			map[string]string{"title": title, "description": "created through the gateway"})
		m := expectMovie(t, r, http.StatusCreated, title)
		if m.ID <= 0 {
			t.Fatalf("no id in %s", show(r))
		}
		moviePath = c.gatewayURL + "/api/movies/" + strconv.FormatInt(m.ID, 10)
	})
	check(t, "GET /api/movies/{id} -> 200, same title", func(t *testing.T) {
		expectMovie(t, do(t, http.MethodGet, moviePath, nil), http.StatusOK, title)
	})
	check(t, "PUT /api/movies/{id} -> 200, new title", func(t *testing.T) {
		r := do(t, http.MethodPut, moviePath, map[string]string{"title": title + " (edited)"})
		expectMovie(t, r, http.StatusOK, title+" (edited)")
	})
	check(t, "GET /api/movies?title= finds it", func(t *testing.T) {
		r := do(t, http.MethodGet, c.gatewayURL+"/api/movies?title="+url.QueryEscape(runID), nil)
		var found []movie
		if r.Status != http.StatusOK {
			t.Fatalf("got %s", show(r))
		}
		if decode(t, r, &found); len(found) != 1 {
			t.Fatalf("found %d movies, want 1: %s", len(found), show(r))
		}
	})
	check(t, "DELETE /api/movies/{id} -> 200", func(t *testing.T) {
		if r := do(t, http.MethodDelete, moviePath, nil); r.Status != http.StatusOK {
			t.Fatalf("got %s", show(r))
		}
	})
	check(t, "GET after DELETE -> 404", func(t *testing.T) {
		if r := do(t, http.MethodGet, moviePath, nil); r.Status != http.StatusNotFound {
			t.Fatalf("got %s", show(r))
		}
	})
}

// walkBilling: an order becomes a row in billing's database; with
// billing_app stopped it waits in the queue; a message published from the
// management API (as the UI does) is consumed like the gateway's.
func walkBilling(t *testing.T, runID string) {
	c := cfg
	key1, key2 := "topology-"+runID+"-1", "topology-"+runID+"-2"
	check(t, "POST /api/billing -> 200 Message posted", func(t *testing.T) { postOrder(t, key1) })
	check(t, "the order becomes one row in billing_db", func(t *testing.T) {
		waitOrders(t, 30*time.Second, "message_id", key1, "1")
	})
	// billing-vm also runs Prometheus, next to RabbitMQ.
	check(t, "each namespace's PM2 runs its own apps only", func(t *testing.T) {
		var got []string
		for _, ns := range []string{c.gatewayNS, c.inventoryNS, c.billingNS} {
			got = append(got, onlineApps(t, ns))
		}
		if want := "gateway_app inventory_app billing_app,prometheus_app"; strings.Join(got, " ") != want {
			t.Fatalf("online apps per namespace: %q, want %q", got, want)
		}
	})

	check(t, "pm2 stop billing_app", func(t *testing.T) { pm2(t, c.billingNS, "stop", "billing_app") })
	check(t, "billing stopped: POST /api/billing still 200", func(t *testing.T) { postOrder(t, key2) })
	check(t, "billing stopped: the message waits in "+c.queue, func(t *testing.T) {
		testenv.WaitFor(t, 30*time.Second, "a message in "+c.queue, func() bool { return queued(t) > 0 })
	})
	check(t, "billing stopped: no row yet", func(t *testing.T) {
		if n := orders(t, "message_id", key2); n != "0" {
			t.Fatalf("orders for %s: %s, want 0", key2, n)
		}
	})
	check(t, "pm2 start billing_app", func(t *testing.T) { pm2(t, c.billingNS, "start", "billing_app") })
	check(t, "billing started: the waiting order becomes its row", func(t *testing.T) {
		waitOrders(t, 60*time.Second, "message_id", key2, "1")
	})

	uiUser := "ui-" + runID
	check(t, "management API publish (as the UI does) -> routed", func(t *testing.T) {
		payload, err := json.Marshal(map[string]string{"user_id": uiUser, "number_of_items": "2", "total_amount": "19.90"})
		if err != nil {
			t.Fatal(err)
		}
		auth := base64.StdEncoding.EncodeToString([]byte(c.adminBroker.User + ":" + c.adminBroker.Password))
		r := do(t, http.MethodPost, c.managementURL+"/api/exchanges/"+url.PathEscape(c.broker.VHost)+"/amq.default/publish",
			map[string]any{
				"properties":       map[string]any{"delivery_mode": 2, "content_type": "application/json"},
				"routing_key":      c.queue,
				"payload":          string(payload),
				"payload_encoding": "string",
			}, "Authorization", "Basic "+auth)
		var out struct {
			Routed bool `json:"routed"`
		}
		if r.Status != http.StatusOK {
			t.Fatalf("got %s", show(r))
		}
		if decode(t, r, &out); !out.Routed {
			t.Fatalf("not routed: %s", show(r))
		}
	})
	check(t, "the published message becomes a row", func(t *testing.T) {
		waitOrders(t, 30*time.Second, "user_id", uiUser, "1")
	})
}

func postOrder(t *testing.T, key string) {
	t.Helper()
	r := do(t, http.MethodPost, cfg.gatewayURL+"/api/billing",
		map[string]string{"user_id": "topology-user", "number_of_items": "5", "total_amount": "180"},
		"Idempotency-Key", key)
	var out struct {
		Message string `json:"message"`
	}
	if r.Status != http.StatusOK {
		t.Fatalf("POST /api/billing = %s", show(r))
	}
	if decode(t, r, &out); out.Message != "Message posted" {
		t.Fatalf("POST /api/billing = %s, want Message posted", show(r))
	}
}

// orders counts billing's rows whose column equals value, as the billing
// role over TCP on billing-vm's loopback.
func orders(t *testing.T, column, value string) string {
	t.Helper()
	p := probe{PG: &cfg.billingDB, Query: "SELECT count(*) FROM orders WHERE " + column + " = ?", Args: []any{value}}
	return p.from(t, cfg.billingNS)
}

func waitOrders(t *testing.T, timeout time.Duration, column, value, want string) {
	t.Helper()
	last := ""
	if !testinfra.Poll(timeout, 250*time.Millisecond, func() bool {
		last = orders(t, column, value)
		return last == want
	}) {
		t.Fatalf("orders with %s %s: %s after %s, want %s", column, value, last, timeout, want)
	}
}

// queued is the number of ready messages in the queue (a passive declare,
// as the gateway's user from the host); -1 when the broker cannot tell.
func queued(t *testing.T) int {
	t.Helper()
	conn, err := broker.Dial(cfg.broker)
	if err != nil {
		t.Logf("connect %s: %v", cfg.broker, err)
		return -1
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Logf("channel: %v", err)
		return -1
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(cfg.queue, true, false, false, false, nil)
	if err != nil {
		t.Logf("queue %s: %v", cfg.queue, err)
		return -1
	}
	return q.Messages
}

// onlineApps lists the apps online in the PM2 of namespace ns, sorted and
// comma-separated.
func onlineApps(t *testing.T, ns string) string {
	t.Helper()
	var apps []struct {
		Name   string `json:"name"`
		PM2Env struct {
			Status string `json:"status"`
		} `json:"pm2_env"`
	}
	out := pm2(t, ns, "jlist")
	if err := json.Unmarshal(out, &apps); err != nil {
		t.Fatalf("pm2 jlist in %s: %v: %s", ns, err, out)
	}
	var online []string
	for _, a := range apps {
		if a.PM2Env.Status == "online" {
			online = append(online, a.Name)
		}
	}
	slices.Sort(online)
	return strings.Join(online, ",")
}

// checkPostgresIsolation: each PostgreSQL listens on its own VM's loopback
// only, so a TCP connection from anywhere else is refused (not merely
// rejected by a password check).
func checkPostgresIsolation(t *testing.T) {
	c := cfg
	check(t, "inventory's PostgreSQL answers on its localhost (control)", func(t *testing.T) {
		if v := (probe{PG: &c.inventoryDB, Query: "SELECT 1"}).from(t, c.inventoryNS); v != "1" {
			t.Fatalf("SELECT 1 in %s: %s", c.inventoryNS, v)
		}
	})
	refused := func(from, addr, port string) func(t *testing.T) {
		return func(t *testing.T) {
			db := c.inventoryDB
			db.Host, db.Port = addr, port
			ns := from
			if from == "host" {
				ns = ""
			}
			if v := (probe{PG: &db, Query: "SELECT 1"}).from(t, ns); v != "refused" {
				t.Fatalf("from %s to %s:%s: %s, want refused", from, addr, port, v)
			}
		}
	}
	for _, target := range []struct{ owner, addr, port string }{
		{c.inventoryNS, c.inventoryIP, c.inventoryDB.Port},
		{c.billingNS, c.billingIP, c.billingDB.Port},
	} {
		for _, from := range []string{c.gatewayNS, "host", target.owner} {
			check(t, fmt.Sprintf("%s's PostgreSQL refuses %s at %s:%s", target.owner, from, target.addr, target.port),
				refused(from, target.addr, target.port))
		}
	}
	check(t, c.inventoryNS+" cannot reach billing's PostgreSQL", refused(c.inventoryNS, c.billingIP, c.billingDB.Port))
}

// checkRabbitMQLogins: one user per client with the least permissions it
// needs (docs/security.md). guest is deleted; the gateway's user logs in
// from gateway-vm (and publishes: the walkthrough) but consuming
// billing_queue is refused; billing's user cannot consume the DLQ; the
// administrator logs in to the management API.
func checkRabbitMQLogins(t *testing.T) {
	c := cfg
	check(t, "guest is deleted", func(t *testing.T) {
		if code := managementGet(t, c.adminBroker, "/api/users/guest", nil); code != http.StatusNotFound {
			t.Fatalf("GET /api/users/guest: %d, want 404", code)
		}
	})
	check(t, c.adminBroker.User+" logs in to the management API as administrator", func(t *testing.T) {
		var who struct {
			Tags any `json:"tags"`
		}
		if code := managementGet(t, c.adminBroker, "/api/whoami", &who); code != http.StatusOK {
			t.Fatalf("GET /api/whoami: %d, want 200", code)
		}
		if tags, _ := json.Marshal(who.Tags); !strings.Contains(string(tags), `"administrator"`) {
			t.Fatalf("tags %s, want administrator", tags)
		}
	})
	check(t, c.broker.User+" cannot log in to the management API", func(t *testing.T) {
		if code := managementGet(t, c.broker, "/api/whoami", nil); code != http.StatusUnauthorized {
			t.Fatalf("GET /api/whoami: %d, want 401", code)
		}
	})
	check(t, c.broker.User+" logs in from gateway-vm", func(t *testing.T) {
		if v := (probe{AMQP: &c.broker}).from(t, c.gatewayNS); v != "accepted" {
			t.Fatalf("%s from %s: %s, want accepted", c.broker.User, c.gatewayNS, v)
		}
	})
	dlq := broker.Topology{Queue: c.queue}.DeadLetterQueue()
	check(t, c.broker.User+" cannot consume "+c.queue, consumeRefused(c.broker, c.queue))
	check(t, c.billingBroker.User+" cannot consume "+dlq, consumeRefused(c.billingBroker, dlq))
}

// consumeRefused: basic.consume on queue as the user is refused with
// ACCESS_REFUSED (403).
func consumeRefused(as broker.Config, queue string) func(t *testing.T) {
	return func(t *testing.T) {
		conn, err := broker.Dial(as)
		if err != nil {
			t.Fatalf("connect %s: %v", as, err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatalf("channel: %v", err)
		}
		_, err = ch.Consume(queue, "", false, false, false, false, nil)
		var aerr *amqp.Error
		if !errors.As(err, &aerr) || aerr.Code != amqp.AccessRefused {
			t.Fatalf("consume %s as %s: %v, want ACCESS_REFUSED (403)", queue, as.User, err)
		}
	}
}

// managementGet GETs path from the management API as the user, decodes
// the body into out when out is set, and returns the status.
func managementGet(t *testing.T, as broker.Config, path string, out any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, cfg.managementURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(as.User, as.Password)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("management API: %v", err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("management API %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

// checkSystemUser: in each namespace PM2 (root's daemon there) runs the
// service as the system user moviestream.
func checkSystemUser(t *testing.T) {
	c := cfg
	for _, ns := range []struct{ name, app string }{
		{c.gatewayNS, "gateway_app"}, {c.inventoryNS, "inventory_app"}, {c.billingNS, "billing_app"},
	} {
		check(t, ns.app+" runs as moviestream in "+ns.name, func(t *testing.T) {
			var apps []struct {
				Name string `json:"name"`
				PID  int    `json:"pid"`
			}
			if err := json.Unmarshal(pm2(t, ns.name, "jlist"), &apps); err != nil {
				t.Fatalf("pm2 jlist: %v", err)
			}
			for _, a := range apps {
				if a.Name != ns.app {
					continue
				}
				out, err := exec.Command("ps", "-o", "user=", "-p", strconv.Itoa(a.PID)).Output()
				if err != nil {
					t.Fatalf("ps -p %d: %v", a.PID, err)
				}
				if user := strings.TrimSpace(string(out)); user != "moviestream" {
					t.Fatalf("%s (pid %d) runs as %q, want moviestream", ns.app, a.PID, user)
				}
				return
			}
			t.Fatalf("no %s in %s's PM2", ns.app, ns.name)
		})
	}
}

// checkListeners: in each namespace every listening socket is on loopback
// or that namespace's private address, never on every interface (a VM's
// NAT interface), except the gateway's public port; then, from gateway-vm,
// what billing-vm keeps to itself is refused, and what a peer needs is open.
func checkListeners(t *testing.T) {
	c := cfg
	// epmd, Erlang's port mapper (started with the RabbitMQ node), binds
	// every interface: it only tells node names and ports, and the
	// distribution port itself is on loopback (provision-rabbitmq.sh).
	// Restricting it needs ERL_EPMD_ADDRESS in epmd's own environment
	// (docs/security.md).
	const epmdPort = 4369
	for _, ns := range []struct{ name, ip string }{
		{c.gatewayNS, c.gatewayIP}, {c.inventoryNS, c.inventoryIP}, {c.billingNS, c.billingIP},
	} {
		check(t, ns.name+": every listener on loopback or "+ns.ip, func(t *testing.T) {
			ls, err := testinfra.Listeners(ns.name)
			if err != nil {
				t.Fatal(err)
			}
			if len(ls) == 0 {
				t.Fatal("no listener at all: ss saw nothing")
			}
			for _, l := range ls {
				switch {
				case l.Loopback() || l.Host == ns.ip:
				case ns.name == c.gatewayNS && l.Port == c.gatewayPort:
				case l.Port == epmdPort && l.Process == "epmd":
				default:
					t.Errorf("%s listens on %s", ns.name, l)
				}
			}
			t.Logf("%s: %v", ns.name, ls)
		})
	}
	tcp := func(ns, host string, port int, want string) func(t *testing.T) {
		return func(t *testing.T) {
			addr := net.JoinHostPort(host, strconv.Itoa(port))
			if v := (probe{TCP: addr}).from(t, ns); v != want {
				t.Fatalf("TCP from %s to %s: %s, want %s", ns, addr, v, want)
			}
		}
	}
	for _, p := range []struct {
		what string
		port int
	}{
		{"billing's health port", c.billingHealthPort},
		{"the prometheus plugin", c.rabbitPromPort},
		{"Prometheus", c.prometheusPort},
	} {
		check(t, fmt.Sprintf("%s cannot reach %s at %s:%d", c.gatewayNS, p.what, c.billingIP, p.port),
			tcp(c.gatewayNS, c.billingIP, p.port, "refused"))
	}
	check(t, c.billingNS+" reaches billing's health port on its loopback (control)",
		tcp(c.billingNS, "127.0.0.1", c.billingHealthPort, "open"))
	// Intended: Prometheus on billing-vm scrapes the admin listeners at the
	// VMs' private addresses; the gateway publishes to AMQP, the host's
	// browser opens the management UI, the gateway calls inventory.
	check(t, c.billingNS+" reaches inventory's admin port (Prometheus)",
		tcp(c.billingNS, c.inventoryIP, c.inventoryAdminPort, "open"))
	check(t, c.billingNS+" reaches the gateway's admin port (Prometheus)",
		tcp(c.billingNS, c.gatewayIP, c.gatewayAdminPort, "open"))
	check(t, c.gatewayNS+" reaches RabbitMQ's AMQP port", tcp(c.gatewayNS, c.billingIP, c.rabbitPort, "open"))
	check(t, "the host reaches the management UI at "+c.billingIP, tcp("", c.billingIP, c.managementPort, "open"))
	check(t, "RabbitMQ's AMQP port answers on billing-vm's loopback",
		tcp(c.billingNS, "127.0.0.1", c.rabbitPort, "open"))
}

// checkConfigFiles: the override files the roles wrote hold addresses only,
// and no .env secret reached them or a PM2 dump.
func checkConfigFiles(t *testing.T) {
	c := cfg
	check(t, "gateway-vm's override file points at the other VMs", func(t *testing.T) {
		path := filepath.Join(c.hostEnvDir, c.gatewayNS, "gateway.env")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want := "RABBITMQ_ADDRS=" + net.JoinHostPort(c.billingIP, strconv.Itoa(c.rabbitPort))
		for sc := bufio.NewScanner(bytes.NewReader(b)); sc.Scan(); {
			if sc.Text() == want {
				return
			}
		}
		t.Fatalf("%s has no line %s:\n%s", path, want, b)
	})
	check(t, "no .env secret in the override files or PM2 dumps", func(t *testing.T) {
		overrides, _ := filepath.Glob(filepath.Join(c.hostEnvDir, "*", "*.env"))
		dumps, _ := filepath.Glob(filepath.Join(c.pm2Dir, "*", "dump.pm2"))
		if len(overrides) == 0 || len(dumps) == 0 {
			t.Fatalf("nothing to inspect: override files %q, PM2 dumps %q", overrides, dumps)
		}
		for _, f := range append(overrides, dumps...) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for key, secret := range c.secrets {
				if bytes.Contains(b, []byte(secret)) {
					t.Errorf("%s contains the value of %s", f, key)
				}
			}
		}
	})
}
