package httpapi_test

// Tests of the gateway as main assembles it: these routes, the real
// inventory proxy in front of a real backend that reads bodies the way
// inventory does, and the real order intake over a fake publisher. Requests
// that must reach the gateway byte for byte (odd paths, bodies cut short)
// are written over a raw TCP connection, because net/http's client cleans
// some paths and never sends a body shorter than its Content-Length.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/errs"
	"moviestream/pkg/testenv"
	"moviestream/pkg/web"
	"moviestream/services/gateway/internal/billingapi"
	"moviestream/services/gateway/internal/httpapi"
	"moviestream/services/gateway/internal/proxy"
)

const (
	key1 = "k1-9f2c41d7a0b3e6"
	key2 = "k2-5e8a13c6f7d240"
)

// invRequest is what the inventory stand-in received.
type invRequest struct {
	Method     string
	RequestURI string
	BodyLen    int  // bytes of body read, at most the limit + 1
	Complete   bool // the whole body arrived, within the limit
	APIKey     []string
}

// inventory reads each body as inventory does (web.ReadBody, 1 MiB) and
// answers like it: the shared JSON error when the body is unusable, else
// 201 for POST and 200 for the rest.
type inventory struct {
	mu   sync.Mutex
	seen []invRequest
}

func (inv *inventory) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	counted := &countingReader{r: r.Body}
	r.Body = counted
	_, err := web.ReadBody(w, r, web.MaxBodyBytes)
	inv.mu.Lock()
	inv.seen = append(inv.seen, invRequest{
		Method: r.Method, RequestURI: r.RequestURI, BodyLen: counted.n, Complete: err == nil,
		APIKey: r.Header.Values(httpapi.APIKeyHeader),
	})
	inv.mu.Unlock()
	switch {
	case err != nil:
		web.WriteError(w, web.Classify(err, nil))
	case r.Method == http.MethodPost:
		w.WriteHeader(http.StatusCreated)
	default:
		w.WriteHeader(http.StatusOK)
	}
}

type countingReader struct {
	r io.ReadCloser
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

func (inv *inventory) requests() []invRequest {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return append([]invRequest(nil), inv.seen...)
}

// complete counts the requests whose whole body inventory received.
func (inv *inventory) complete() int {
	n := 0
	for _, r := range inv.requests() {
		if r.Complete {
			n++
		}
	}
	return n
}

// publisher is a broker that confirms everything.
type publisher struct {
	mu     sync.Mutex
	bodies []string
}

func (p *publisher) Publish(_ context.Context, msg amqp.Publishing) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bodies = append(p.bodies, string(msg.Body))
	return nil
}

func (p *publisher) published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.bodies...)
}

type gateway struct {
	url  string
	addr string
	inv  *inventory
	pub  *publisher
	logs *testenv.LogBuffer
}

// newGateway starts the gateway as main wires it, logging at debug level;
// readTimeout, when set, is the server's ReadTimeout.
func newGateway(t *testing.T, keys []string, readTimeout time.Duration) *gateway {
	t.Helper()
	g := &gateway{inv: &inventory{}, pub: &publisher{}, logs: &testenv.LogBuffer{}}
	log := slog.New(slog.NewJSONHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	backend := httptest.NewServer(g.inv)
	t.Cleanup(backend.Close)
	target, err := url.Parse(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	movies, err := proxy.New(proxy.Config{Target: target, Timeout: 5 * time.Second, MaxBodyBytes: web.MaxBodyBytes}, log)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	h, err := httpapi.New(httpapi.Deps{
		Movies:      movies,
		PostBilling: billingapi.New(g.pub, time.Second, nil).Post,
		Ready:       func() (bool, any) { return true, nil },
		APIKeys:     keys,
	}, log, nil)
	if err != nil {
		t.Fatalf("httpapi.New: %v", err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadTimeout = readTimeout
	srv.Start()
	t.Cleanup(srv.Close)
	g.url, g.addr = srv.URL, srv.Listener.Addr().String()
	return g
}

// rawResponse is what came back over a raw connection.
type rawResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// rawSend writes head and then body over a new connection, exactly as
// given, while reading the answer: a gateway may answer before the body is
// sent, and a failed write is not the test's concern, only the answer.
// With halfClose, it closes its sending side once body is written. An
// error means no complete answer arrived.
func rawSend(t *testing.T, addr, head string, body []byte, halfClose bool) (rawResponse, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial gateway: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	written := make(chan struct{})
	go func() {
		defer close(written)
		if _, err := io.WriteString(conn, head); err != nil {
			return
		}
		if _, err := conn.Write(body); err != nil {
			return
		}
		if halfClose {
			_ = conn.(*net.TCPConn).CloseWrite()
		}
	}()
	defer func() { conn.Close(); <-written }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return rawResponse{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return rawResponse{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
}

// wantError checks r is the JSON error shape with status and code.
func wantError(t *testing.T, r rawResponse, status int, code errs.Code) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status = %d, want %d; body %q", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var got web.ErrorBody
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatalf("body %q is not the JSON error shape: %v", r.Body, err)
	}
	if got.Error.Code != code || got.Error.Message == "" {
		t.Errorf("error = %+v, want code %q with a message", got.Error, code)
	}
}

// wantNoErrorLogs fails if the gateway logged anything at error level.
func wantNoErrorLogs(t *testing.T, g *gateway) {
	t.Helper()
	if logs := g.logs.String(); strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("a client fault was logged at error level:\n%s", logs)
	}
}

func TestAPIKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		keys   []string
		method string
		target string
		key    *string // nil = no header
		status int
	}{
		{name: "unset: post without key", method: http.MethodPost, target: "/api/movies", status: http.StatusCreated},
		{name: "unset: post with empty key", method: http.MethodPost, target: "/api/movies", key: ptr(""), status: http.StatusCreated},
		{name: "unset: post with any key", method: http.MethodPost, target: "/api/movies", key: ptr("whatever"), status: http.StatusCreated},
		{name: "unset: put without key", method: http.MethodPut, target: "/api/movies/1", status: http.StatusOK},
		{name: "unset: delete without key", method: http.MethodDelete, target: "/api/movies", status: http.StatusOK},
		{name: "unset: billing without key", method: http.MethodPost, target: "/api/billing", status: http.StatusOK},

		{name: "set: get without key", keys: []string{key1, key2}, method: http.MethodGet, target: "/api/movies", status: http.StatusOK},
		{name: "set: get item without key", keys: []string{key1}, method: http.MethodGet, target: "/api/movies/1", status: http.StatusOK},
		{name: "set: head without key", keys: []string{key1}, method: http.MethodHead, target: "/api/movies", status: http.StatusOK},
		{name: "set: options without key", keys: []string{key1}, method: http.MethodOptions, target: "/api/movies", status: http.StatusOK},
		{name: "set: post without key", keys: []string{key1, key2}, method: http.MethodPost, target: "/api/movies", status: http.StatusUnauthorized},
		{name: "set: post with empty key", keys: []string{key1, key2}, method: http.MethodPost, target: "/api/movies", key: ptr(""), status: http.StatusUnauthorized},
		{name: "set: post with wrong key", keys: []string{key1, key2}, method: http.MethodPost, target: "/api/movies", key: ptr("k3-wrong-key-00000"), status: http.StatusUnauthorized},
		{name: "set: post with a prefix of a key", keys: []string{key1, key2}, method: http.MethodPost, target: "/api/movies", key: ptr(key1[:8]), status: http.StatusUnauthorized},
		{name: "set: post with a key and more", keys: []string{key1, key2}, method: http.MethodPost, target: "/api/movies", key: ptr(key1 + "x"), status: http.StatusUnauthorized},
		{name: "set: post with both keys", keys: []string{key1, key2}, method: http.MethodPost, target: "/api/movies", key: ptr(key1 + "," + key2), status: http.StatusUnauthorized},
		{name: "set: post with first key", keys: []string{key1, key2}, method: http.MethodPost, target: "/api/movies", key: ptr(key1), status: http.StatusCreated},
		{name: "set: post with second key", keys: []string{key1, key2}, method: http.MethodPost, target: "/api/movies/", key: ptr(key2), status: http.StatusCreated},
		{name: "set: put without key", keys: []string{key1}, method: http.MethodPut, target: "/api/movies/1", status: http.StatusUnauthorized},
		{name: "set: put with key", keys: []string{key1}, method: http.MethodPut, target: "/api/movies/1", key: ptr(key1), status: http.StatusOK},
		{name: "set: delete without key", keys: []string{key1}, method: http.MethodDelete, target: "/api/movies/1", status: http.StatusUnauthorized},
		{name: "set: delete all with wrong key", keys: []string{key1}, method: http.MethodDelete, target: "/api/movies", key: ptr(key2), status: http.StatusUnauthorized},
		{name: "set: delete with key", keys: []string{key1}, method: http.MethodDelete, target: "/api/movies/1", key: ptr(key1), status: http.StatusOK},
		{name: "set: patch without key", keys: []string{key1}, method: http.MethodPatch, target: "/api/movies/1", status: http.StatusUnauthorized},
		{name: "set: billing without key", keys: []string{key1}, method: http.MethodPost, target: "/api/billing", status: http.StatusUnauthorized},
		{name: "set: billing with wrong key", keys: []string{key1}, method: http.MethodPost, target: "/api/billing", key: ptr(key2), status: http.StatusUnauthorized},
		{name: "set: billing with key", keys: []string{key1}, method: http.MethodPost, target: "/api/billing", key: ptr(key1), status: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, tt.keys, 0)
			header := http.Header{"Content-Type": {"application/json"}}
			if tt.key != nil {
				header[httpapi.APIKeyHeader] = []string{*tt.key}
			}
			var body io.Reader
			if tt.method != http.MethodGet && tt.method != http.MethodHead {
				body = strings.NewReader(`{"user_id":"3","number_of_items":"5","total_amount":"180","title":"Alien"}`)
			}
			r := testenv.Do(t, nil, tt.method, g.url+tt.target, body, header)
			if r.Status != tt.status {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.status, r.Body)
			}
			reached := len(g.inv.requests()) + len(g.pub.published())
			if tt.status == http.StatusUnauthorized {
				wantError(t, rawResponse{Status: r.Status, Header: r.Header, Body: r.Body}, tt.status, errs.Unauthorized)
				if reached != 0 {
					t.Errorf("%d requests went past the gateway without a valid key", reached)
				}
			} else if reached != 1 {
				t.Errorf("%d requests reached inventory or the broker, want 1", reached)
			}
			for _, seen := range g.inv.requests() {
				if len(seen.APIKey) != 0 {
					t.Errorf("inventory received %s: %q", httpapi.APIKeyHeader, seen.APIKey)
				}
			}
			// The keys, right or wrong, never appear in the log, which does
			// record the refusal.
			logs := g.logs.String()
			if tt.status == http.StatusUnauthorized && !strings.Contains(logs, string(errs.Unauthorized)) {
				t.Errorf("the refusal was not logged:\n%s", logs)
			}
			for _, k := range append([]string{key1, key2, key1[:8], "k3-wrong-key"}, tt.keys...) {
				if strings.Contains(logs, k) {
					t.Errorf("log contains the key %q:\n%s", k, logs)
				}
			}
		})
	}
}

func ptr(s string) *string { return &s }

// TestRefusedPaths: a path with dot segments or encoded slashes gets 400
// and never reaches inventory, whatever the method; look-alikes that are
// plain names pass.
func TestRefusedPaths(t *testing.T) {
	t.Parallel()
	refused := []string{
		"/api/movies/../x",
		"/api/movies/%2e%2e/x",
		"/api/movies%2f..%2fx",
		"/api/movies%2F..%2Fx",
		"/api/movies/%2E%2E/x",
		"/api/movies/.%2e/x",
		"/api/movies/..%2fx",
		"/api/movies/..",
		"/api/movies/../",
		"/api/movies/./x",
		"/api/movies/.",
		"/api/movies/%2e",
		"/api/movies/1/../../health",
		"/api/movies/1/..?x=1",
		"/api/movies/a%2Fb",
		"/api/movies%2fx",
		"/api/movies/x%5c..%5cy",
	}
	passed := []string{
		"/api/movies/..x",
		"/api/movies/a..b",
		"/api/movies/.hidden",
		"/api/movies/%252e%252e/x",
		"/api/movies/1?path=../x",
	}
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		for _, target := range refused {
			t.Run(method+" "+target, func(t *testing.T) {
				t.Parallel()
				g := newGateway(t, nil, 0)
				head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n", method, target)
				r, err := rawSend(t, g.addr, head, []byte("{}"), false)
				if err != nil {
					t.Fatalf("no answer: %v", err)
				}
				wantError(t, r, http.StatusBadRequest, errs.InvalidPath)
				if seen := g.inv.requests(); len(seen) != 0 {
					t.Errorf("inventory received %+v", seen)
				}
			})
		}
	}
	for _, target := range passed {
		t.Run("passes "+target, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, nil, 0)
			head := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n", target)
			r, err := rawSend(t, g.addr, head, nil, false)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if r.Status != http.StatusOK {
				t.Fatalf("status = %d, want inventory's 200; body %q", r.Status, r.Body)
			}
			if seen := g.inv.requests(); len(seen) != 1 || seen[0].RequestURI != target {
				t.Errorf("inventory received %+v, want one request for %s as sent", seen, target)
			}
		})
	}
}

// TestTruncatedBody: a client that announces 100 bytes, sends 10 and
// half-closes gets 400 every time, through the proxy and at order intake,
// and nothing is created.
func TestTruncatedBody(t *testing.T) {
	t.Parallel()
	const tries = 20
	for _, target := range []string{"/api/movies", "/api/movies/1", "/api/billing"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, nil, 0)
			method := http.MethodPost
			if target == "/api/movies/1" {
				method = http.MethodPut
			}
			head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n", method, target)
			for i := range tries {
				r, err := rawSend(t, g.addr, head, []byte(`{"title":"`), true)
				if err != nil {
					t.Fatalf("try %d: no answer: %v", i, err)
				}
				wantError(t, r, http.StatusBadRequest, errs.IncompleteBody)
			}
			if n := g.inv.complete(); n != 0 {
				t.Errorf("inventory received %d complete requests from cut bodies", n)
			}
			if p := g.pub.published(); len(p) != 0 {
				t.Errorf("published %q from cut bodies", p)
			}
			wantNoErrorLogs(t, g)
		})
	}
}

// TestSlowBody: a body that does not arrive within the server's read
// timeout gets 400 or a closed connection, never a 2xx or 5xx.
func TestSlowBody(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"/api/movies", "/api/billing"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, nil, 300*time.Millisecond)
			head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n", target)
			r, err := rawSend(t, g.addr, head, []byte(`{"title":"`), false) // and then nothing
			var netErr net.Error
			switch {
			case err != nil && errors.As(err, &netErr) && netErr.Timeout():
				t.Fatalf("the gateway neither answered nor closed the connection: %v", err)
			case err != nil: // closed without an answer: acceptable
			default:
				wantError(t, r, http.StatusBadRequest, errs.IncompleteBody)
			}
			if n := g.inv.complete() + len(g.pub.published()); n != 0 {
				t.Errorf("%d requests went through with a body that never arrived", n)
			}
			wantNoErrorLogs(t, g)
		})
	}
}

// TestBodyOverLimit: a movie body over 1 MiB gets 413 every time, whether
// its length is announced or it comes chunked, and inventory never gets
// it; exactly 1 MiB still goes through.
func TestBodyOverLimit(t *testing.T) {
	t.Parallel()
	const tries = 20
	chunked := func(payload []byte) []byte {
		var b bytes.Buffer
		for len(payload) > 0 {
			n := min(len(payload), 64<<10)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, payload[:n])
			payload = payload[n:]
		}
		b.WriteString("0\r\n\r\n")
		return b.Bytes()
	}
	tests := []struct {
		name    string
		size    int
		chunked bool
		status  int
	}{
		{name: "content-length over", size: 2 << 20, status: http.StatusRequestEntityTooLarge},
		{name: "content-length one byte over", size: web.MaxBodyBytes + 1, status: http.StatusRequestEntityTooLarge},
		{name: "chunked over", size: 2 << 20, chunked: true, status: http.StatusRequestEntityTooLarge},
		{name: "chunked one byte over", size: web.MaxBodyBytes + 1, chunked: true, status: http.StatusRequestEntityTooLarge},
		{name: "content-length at the limit", size: web.MaxBodyBytes, status: http.StatusCreated},
		{name: "chunked at the limit", size: web.MaxBodyBytes, chunked: true, status: http.StatusCreated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, nil, 0)
			payload := bytes.Repeat([]byte("a"), tt.size)
			head := fmt.Sprintf("POST /api/movies HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", tt.size)
			if tt.chunked {
				head = "POST /api/movies HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
				payload = chunked(payload)
			}
			for i := range tries {
				r, err := rawSend(t, g.addr, head, payload, false)
				if err != nil {
					t.Fatalf("try %d: no answer: %v", i, err)
				}
				if tt.status == http.StatusCreated {
					if r.Status != tt.status {
						t.Fatalf("try %d: status = %d, want %d; body %q", i, r.Status, tt.status, r.Body)
					}
					continue
				}
				wantError(t, r, tt.status, errs.TooLarge)
			}
			seen := g.inv.requests()
			switch {
			case tt.status == http.StatusCreated:
				if n := g.inv.complete(); n != tries {
					t.Errorf("inventory received %d complete bodies, want %d", n, tries)
				}
			case !tt.chunked && len(seen) != 0:
				t.Errorf("inventory received %d requests announced over the limit", len(seen))
			default:
				for _, s := range seen {
					if s.Complete || s.BodyLen > web.MaxBodyBytes {
						t.Errorf("inventory received %+v, want no body over the limit", s)
					}
				}
			}
			wantNoErrorLogs(t, g)
		})
	}
}
