package proxy_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"moviestream/pkg/errs"
	"moviestream/pkg/ginweb"
	"moviestream/pkg/testenv"
	"moviestream/pkg/web"
	"moviestream/services/gateway/internal/proxy"
)

// clientTimeout bounds every request a test sends, so a proxy that hangs
// fails the test instead of the whole run.
const clientTimeout = 10 * time.Second

// seenRequest is what a backend received.
type seenRequest struct {
	Method        string
	RequestURI    string
	Body          string
	ContentType   string
	ClientHeader  []string
	XForwardedFor []string
	Forwarded     []string
	RequestID     []string
}

// recorder is a backend that records the requests it gets.
type recorder struct {
	mu   sync.Mutex
	seen []seenRequest
}

func (rec *recorder) record(r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.seen = append(rec.seen, seenRequest{
		Method:        r.Method,
		RequestURI:    r.RequestURI,
		Body:          string(body),
		ContentType:   r.Header.Get("Content-Type"),
		ClientHeader:  r.Header.Values("X-Client-Header"),
		XForwardedFor: r.Header.Values("X-Forwarded-For"),
		Forwarded:     r.Header.Values("Forwarded"),
		RequestID:     r.Header.Values(web.RequestIDHeader),
	})
	return nil
}

func (rec *recorder) requests() []seenRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seenRequest(nil), rec.seen...)
}

// newBackend starts a real inventory stand-in.
func newBackend(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// newCountingBackend is newBackend that also counts the connections the
// proxy opens to it.
func newCountingBackend(t testing.TB, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// newGateway starts a server whose only handler is the proxy to target.
func newGateway(t testing.TB, target string, timeout time.Duration) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("parse %q: %v", target, err)
	}
	srv := httptest.NewServer(mustProxy(t, proxy.Config{Target: u, Timeout: timeout}))
	t.Cleanup(srv.Close)
	return srv
}

// newEngineGateway mounts the proxy the way the gateway does: on the shared
// gin engine, behind its request-id, logging and recovery middleware.
func newEngineGateway(t testing.TB, target string, timeout time.Duration) *httptest.Server {
	t.Helper()
	return newEngineGatewayWith(t, target, timeout)
}

// newMetricsGateway is newEngineGateway with the HTTP metrics middleware.
func newMetricsGateway(t testing.TB, target string, timeout time.Duration) *httptest.Server {
	t.Helper()
	m := web.NewHTTPMetrics(prometheus.NewRegistry(), "gateway")
	return newEngineGatewayWith(t, target, timeout, ginweb.WithMetrics(m))
}

// newEngineGatewayWith is newEngineGateway with opts for the engine.
func newEngineGatewayWith(t testing.TB, target string, timeout time.Duration, opts ...ginweb.Option) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("parse %q: %v", target, err)
	}
	e, err := ginweb.NewEngine(discardLog(), nil, opts...)
	if err != nil {
		t.Fatalf("engine: %v", err)
	}
	h := gin.WrapH(mustProxy(t, proxy.Config{Target: u, Timeout: timeout}))
	e.Any("/api/movies", h)
	e.Any("/api/movies/*rest", h)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newClient returns a client that reports redirects instead of following
// them and leaves compression alone, so it sees exactly what was sent.
func newClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       clientTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func TestProxyForwardsRequestUnchanged(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		target string // path and raw query, exactly as the client sends them
		body   string
		ctype  string
	}{
		{name: "get collection", method: http.MethodGet, target: "/api/movies"},
		{name: "trailing slash kept", method: http.MethodGet, target: "/api/movies/"},
		{name: "sub-path", method: http.MethodGet, target: "/api/movies/42"},
		{name: "deep sub-path", method: http.MethodGet, target: "/api/movies/42/cast/7/"},
		// An encoded slash (a%2Fb) is refused instead: see TestRefusedPaths
		// in internal/httpapi.
		{name: "escaped path segment", method: http.MethodGet, target: "/api/movies/caf%C3%A9/The%20Matrix%3F%25"},
		{name: "escaped query and repeated keys", method: http.MethodGet,
			target: "/api/movies?title=The%20Matrix&genre=sci-fi&genre=action&q=a%2Bb%26c%3D1&plus=a+b&empty="},
		{name: "query without values", method: http.MethodGet, target: "/api/movies/?flag&x=%C3%A9"},
		{name: "post json body", method: http.MethodPost, target: "/api/movies",
			body: `{"title":"Alien","year":1979,"note":"é ✓ \u0000"}`, ctype: "application/json"},
		{name: "put with query", method: http.MethodPut, target: "/api/movies/42?dry_run=1",
			body: "{\n  \"title\": \"Aliens\"\n}\n", ctype: "application/json; charset=utf-8"},
		{name: "patch", method: http.MethodPatch, target: "/api/movies/42",
			body: `{"year":1986}`, ctype: "application/merge-patch+json"},
		{name: "delete", method: http.MethodDelete, target: "/api/movies/42"},
		{name: "post empty body", method: http.MethodPost, target: "/api/movies", ctype: "application/json"},
		{name: "options", method: http.MethodOptions, target: "/api/movies"},
		{name: "non-json body", method: http.MethodPost, target: "/api/movies/import",
			body: "line 1\r\nline 2\x00\xff", ctype: "application/octet-stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			backend := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := rec.record(r); err != nil {
					t.Errorf("backend: read body: %v", err)
				}
				w.WriteHeader(http.StatusOK)
			}))
			gw := newGateway(t, backend.URL, 5*time.Second)

			header := http.Header{"X-Client-Header": {"kept as is"}}
			if tt.ctype != "" {
				header.Set("Content-Type", tt.ctype)
			}
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			if r := testenv.Do(t, newClient(t), tt.method, gw.URL+tt.target, body, header); r.Status != http.StatusOK {
				t.Fatalf("status = %d, want 200", r.Status)
			}
			want := []seenRequest{{
				Method:        tt.method,
				RequestURI:    tt.target,
				Body:          tt.body,
				ContentType:   tt.ctype,
				ClientHeader:  []string{"kept as is"},
				XForwardedFor: []string{"127.0.0.1"},
			}}
			if diff := cmp.Diff(want, rec.requests()); diff != "" {
				t.Errorf("backend saw (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProxyReturnsBackendResponseUnchanged(t *testing.T) {
	t.Parallel()
	type response struct {
		status int
		header http.Header
		body   string
	}
	tests := []struct {
		name string
		resp response
	}{
		{name: "201 with location and custom header", resp: response{
			status: http.StatusCreated,
			header: http.Header{
				"Content-Type": {"application/json"},
				"Location":     {"/api/movies/42"},
				"X-Custom":     {"custom value"},
			},
			body: `{"id":42,"title":"Alien"}`,
		}},
		{name: "200 with several cookies", resp: response{
			status: http.StatusOK,
			header: http.Header{
				"Content-Type": {"text/plain; charset=utf-8"},
				"Set-Cookie":   {"a=1; Path=/", "b=2; HttpOnly", "c=3; Max-Age=60; Secure"},
				"X-Multi":      {"one", "two"},
			},
			body: "three cookies",
		}},
		{name: "204 no body", resp: response{status: http.StatusNoContent, header: http.Header{"X-Custom": {"x"}}}},
		{name: "302 not followed", resp: response{
			status: http.StatusFound,
			header: http.Header{"Location": {"https://example.com/elsewhere?a=1"}},
		}},
		{name: "404 passthrough", resp: response{
			status: http.StatusNotFound,
			header: http.Header{"Content-Type": {"application/json; charset=utf-8"}},
			body:   `{"error":{"code":"not_found","message":"movie 42 not found"}}` + "\n",
		}},
		{name: "405 passthrough", resp: response{
			status: http.StatusMethodNotAllowed,
			header: http.Header{"Allow": {"GET, PUT, DELETE"}, "Content-Type": {"application/json"}},
			body:   `{"error":{"code":"method_not_allowed","message":"no"}}`,
		}},
		{name: "500 passthrough not rewritten to 502", resp: response{
			status: http.StatusInternalServerError,
			header: http.Header{"Content-Type": {"application/json"}},
			body:   `{"error":{"code":"internal_error","message":"internal error"}}`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			backend := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				for k, vs := range tt.resp.header {
					w.Header()[k] = vs
				}
				w.WriteHeader(tt.resp.status)
				_, _ = io.WriteString(w, tt.resp.body)
			}))
			gw := newGateway(t, backend.URL, 5*time.Second)
			client := newClient(t)

			direct := testenv.Do(t, client, http.MethodGet, backend.URL+"/api/movies/42", nil, nil)
			got := testenv.Do(t, client, http.MethodGet, gw.URL+"/api/movies/42", nil, nil)

			if got.Status != tt.resp.status {
				t.Errorf("status = %d, want %d", got.Status, tt.resp.status)
			}
			if diff := cmp.Diff(tt.resp.body, string(got.Body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			for k, want := range tt.resp.header {
				if diff := cmp.Diff(want, got.Header.Values(k)); diff != "" {
					t.Errorf("header %s (-want +got):\n%s", k, diff)
				}
			}
			// Through the gateway the client gets exactly the headers it
			// would get from inventory directly (Date aside, which ticks).
			direct.Header.Del("Date")
			got.Header.Del("Date")
			if diff := cmp.Diff(direct.Header, got.Header); diff != "" {
				t.Errorf("headers differ from a direct request (-direct +gateway):\n%s", diff)
			}
			if !bytes.Equal(direct.Body, got.Body) {
				t.Errorf("body differs from a direct request: %q vs %q", direct.Body, got.Body)
			}
		})
	}
}

func TestProxyDropsClientForwardingHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header http.Header
	}{
		{name: "x-forwarded-for", header: http.Header{"X-Forwarded-For": {"6.6.6.6"}}},
		{name: "x-forwarded-for list", header: http.Header{"X-Forwarded-For": {"6.6.6.6, 7.7.7.7", "8.8.8.8"}}},
		{name: "forwarded", header: http.Header{"Forwarded": {"for=6.6.6.6"}, "X-Forwarded-For": {"6.6.6.6"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			backend := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_ = rec.record(r)
			}))
			gw := newGateway(t, backend.URL, 5*time.Second)

			if r := testenv.Do(t, newClient(t), http.MethodGet, gw.URL+"/api/movies", nil, tt.header); r.Status != http.StatusOK {
				t.Fatalf("status = %d, want 200", r.Status)
			}
			seen := rec.requests()
			if len(seen) != 1 {
				t.Fatalf("backend got %d requests, want 1", len(seen))
			}
			if diff := cmp.Diff([]string{"127.0.0.1"}, seen[0].XForwardedFor); diff != "" {
				t.Errorf("X-Forwarded-For at the backend (-want +got):\n%s", diff)
			}
			if len(seen[0].Forwarded) != 0 {
				t.Errorf("Forwarded reached the backend: %q", seen[0].Forwarded)
			}
		})
	}
}

// TestProxyRequestIDOnce mounts the proxy the way the gateway does, behind
// the shared engine's request-id middleware, with a backend that echoes the
// id like inventory does.
func TestProxyRequestIDOnce(t *testing.T) {
	t.Parallel()
	echoing := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get(web.RequestIDHeader); id != "" {
			w.Header().Set(web.RequestIDHeader, id)
		}
		w.WriteHeader(http.StatusOK)
	})
	deadAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	tests := []struct {
		name    string
		target  string // "" = the echoing backend
		sent    string // client's X-Request-ID; "" = none
		status  int
		wantIDs []string // nil = exactly one, generated
	}{
		{name: "client id echoed", sent: "client-id-1", status: http.StatusOK, wantIDs: []string{"client-id-1"}},
		{name: "generated id", status: http.StatusOK},
		{name: "dead backend keeps the id", target: "http://" + deadAddr, sent: "client-id-2",
			status: http.StatusBadGateway, wantIDs: []string{"client-id-2"}},
		{name: "dead backend generated id", target: "http://" + deadAddr, status: http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			target := tt.target
			if target == "" {
				target = newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_ = rec.record(r)
					echoing.ServeHTTP(w, r)
				})).URL
			}
			gw := newEngineGateway(t, target, 5*time.Second)

			header := http.Header{}
			if tt.sent != "" {
				header.Set(web.RequestIDHeader, tt.sent)
			}
			r := testenv.Do(t, newClient(t), http.MethodGet, gw.URL+"/api/movies/1", nil, header)
			if r.Status != tt.status {
				t.Fatalf("status = %d, want %d", r.Status, tt.status)
			}
			got := r.Header.Values(web.RequestIDHeader)
			if len(got) != 1 || got[0] == "" {
				t.Fatalf("response X-Request-ID = %q, want exactly one non-empty value", got)
			}
			if tt.wantIDs != nil {
				if diff := cmp.Diff(tt.wantIDs, got); diff != "" {
					t.Errorf("response X-Request-ID (-want +got):\n%s", diff)
				}
			}
			if tt.target == "" {
				seen := rec.requests()
				if len(seen) != 1 {
					t.Fatalf("backend got %d requests, want 1", len(seen))
				}
				if diff := cmp.Diff(got, seen[0].RequestID); diff != "" {
					t.Errorf("backend X-Request-ID differs from the response's (-response +backend):\n%s", diff)
				}
			}
		})
	}
}

func TestProxyStreamsLargeBodies(t *testing.T) {
	t.Parallel()
	const size = 4 << 20
	payload := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	_, _ = rng.Read(payload)
	sum := sha256.Sum256(payload)
	wantSum := hex.EncodeToString(sum[:])

	backend := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost: // upload: answer the hash and length of what arrived
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case http.MethodGet: // download, streamed without Content-Length
			for chunk := range slices.Chunk(payload, 1<<20) {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	}))
	mounts := []struct {
		name string
		gw   *httptest.Server
	}{
		{name: "bare", gw: newGateway(t, backend.URL, 5*time.Second)},
		{name: "engine", gw: newEngineGateway(t, backend.URL, 5*time.Second)},
	}
	tests := []struct {
		name   string
		method string
		body   func() io.Reader
	}{
		{name: "upload with content-length", method: http.MethodPost, body: func() io.Reader { return bytes.NewReader(payload) }},
		// io.MultiReader hides the length: the request goes out chunked.
		{name: "upload chunked", method: http.MethodPost, body: func() io.Reader { return io.MultiReader(bytes.NewReader(payload)) }},
		{name: "download", method: http.MethodGet, body: func() io.Reader { return nil }},
	}
	for _, m := range mounts {
		for _, tt := range tests {
			t.Run(m.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				r := testenv.Do(t, newClient(t), tt.method, m.gw.URL+"/api/movies/blob", tt.body(),
					http.Header{"Content-Type": {"application/octet-stream"}})
				if r.Status != http.StatusOK {
					t.Fatalf("status = %d, want 200 (body %.200q)", r.Status, r.Body)
				}
				got := string(r.Body)
				if tt.method == http.MethodGet {
					s := sha256.Sum256(r.Body)
					got = fmt.Sprintf("%d %x", len(r.Body), s)
				}
				if want := fmt.Sprintf("%d %s", size, wantSum); got != want {
					t.Errorf("length and sha256 = %q, want %q", got, want)
				}
			})
		}
	}
}

// TestProxyStreamsResponse checks the proxy hands each chunk on as the
// backend flushes it instead of buffering the response: the backend only
// sends its second chunk once the client has read the first.
func TestProxyStreamsResponse(t *testing.T) {
	t.Parallel()
	mounts := []struct {
		name string
		new  func(testing.TB, string, time.Duration) *httptest.Server
	}{
		{name: "bare", new: newGateway},
		{name: "engine", new: newEngineGateway},
		{name: "engine-metrics", new: newMetricsGateway},
	}
	for _, m := range mounts {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			firstRead := make(chan struct{})
			backend := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, "data: first\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-firstRead:
					_, _ = io.WriteString(w, "data: second\n\n")
				case <-time.After(5 * time.Second): // the client never saw the first chunk
				case <-r.Context().Done():
				}
			}))
			gw := m.new(t, backend.URL, 5*time.Second)

			resp, err := newClient(t).Get(gw.URL + "/api/movies/events")
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			defer resp.Body.Close()
			first := make([]byte, len("data: first\n\n"))
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatalf("read first chunk: %v", err)
			}
			close(firstRead)
			rest, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read rest: %v", err)
			}
			if got, want := string(first)+string(rest), "data: first\n\ndata: second\n\n"; got != want {
				t.Errorf("stream = %q, want %q (the first chunk was held back)", got, want)
			}
		})
	}
}

func TestProxyUpstreamFailures(t *testing.T) {
	t.Parallel()
	// The slow backend holds each request until the test ends (or the
	// proxy gives up and closes the connection).
	release := make(chan struct{})
	slow := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release) }) // runs before slow.Close

	tests := []struct {
		name    string
		target  string
		method  string
		body    string
		timeout time.Duration
		status  int
		code    errs.Code
	}{
		{name: "dead backend", target: "http://" + "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), method: http.MethodGet,
			timeout: 5 * time.Second, status: http.StatusBadGateway, code: errs.BadGateway},
		{name: "dead backend with body", target: "http://" + "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), method: http.MethodPost, body: `{"title":"x"}`,
			timeout: 5 * time.Second, status: http.StatusBadGateway, code: errs.BadGateway},
		{name: "slow backend", target: slow.URL, method: http.MethodGet,
			timeout: 200 * time.Millisecond, status: http.StatusGatewayTimeout, code: errs.GatewayTimeout},
		{name: "slow backend with body", target: slow.URL, method: http.MethodPut, body: `{"title":"x"}`,
			timeout: 200 * time.Millisecond, status: http.StatusGatewayTimeout, code: errs.GatewayTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gw := newGateway(t, tt.target, tt.timeout)
			r := testenv.Do(t, newClient(t), tt.method, gw.URL+"/api/movies/1", strings.NewReader(tt.body),
				http.Header{"Content-Type": {"application/json"}})
			body := r.Body
			if r.Status != tt.status {
				t.Fatalf("status = %d, want %d (body %s)", r.Status, tt.status, body)
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var got web.ErrorBody
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %q is not the JSON error shape: %v", body, err)
			}
			if got.Error.Code != tt.code || got.Error.Message == "" {
				t.Errorf("error = %+v, want code %q and a message", got.Error, tt.code)
			}
			// The gateway's own errors must not leak Go error text.
			if strings.Contains(string(body), "dial tcp") || strings.Contains(string(body), "net/http") {
				t.Errorf("error body leaks internals: %s", body)
			}
		})
	}
}

func TestProxyConcurrentRequests(t *testing.T) {
	t.Parallel()
	backend, conns := newCountingBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("X-Path", r.URL.Path)
		_, _ = w.Write(body)
	}))
	gw := newGateway(t, backend.URL, 5*time.Second)
	client := newClient(t)

	const workers, perWorker = 20, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				id := fmt.Sprintf("%d-%d", w, i)
				req, err := http.NewRequest(http.MethodPost, gw.URL+"/api/movies/"+id, strings.NewReader("body "+id))
				if err != nil {
					t.Errorf("request %s: %v", id, err)
					return
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("request %s: %v", id, err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					t.Errorf("request %s: read: %v", id, err)
				case resp.StatusCode != http.StatusOK:
					t.Errorf("request %s: status %d", id, resp.StatusCode)
				case string(got) != "body "+id || resp.Header.Get("X-Path") != "/api/movies/"+id:
					t.Errorf("request %s: got body %q path %q: responses crossed", id, got, resp.Header.Get("X-Path"))
				}
			}
		})
	}
	wg.Wait()
	// Keep-alive to inventory: at most one connection per concurrent
	// request, with slack for dials that race a connection being freed.
	// Go's default pool (2 idle per host) would dial for most requests.
	if n := conns.Load(); n > 2*workers {
		t.Errorf("proxy opened %d connections to the backend for %d requests from %d workers; want at most %d",
			n, workers*perWorker, workers, 2*workers)
	}
}

// BenchmarkProxy measures the proxy alone ("bare"), mounted on the
// gateway's gin engine ("engine"), and on the engine with the HTTP metrics
// middleware ("engine-metrics"): the last two give the cost of metrics.
func BenchmarkProxy(b *testing.B) {
	body := []byte(`{"id":42,"title":"Alien","year":1979}`)
	backend, conns := newCountingBackend(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	b.Run("bare", func(b *testing.B) { benchProxy(b, newGateway(b, backend.URL, 5*time.Second), body, conns) })
	b.Run("engine", func(b *testing.B) { benchProxy(b, newEngineGateway(b, backend.URL, 5*time.Second), body, conns) })
	b.Run("engine-metrics", func(b *testing.B) { benchProxy(b, newMetricsGateway(b, backend.URL, 5*time.Second), body, conns) })
}

func benchProxy(b *testing.B, gw *httptest.Server, body []byte, conns *atomic.Int64) {
	conns.Store(0)
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: clientTimeout}
	url := gw.URL + "/api/movies/42?fields=title"

	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || n != int64(len(body)) {
				b.Errorf("status %d, %d bytes", resp.StatusCode, n)
				return
			}
		}
	})
	b.ReportMetric(float64(conns.Load()), "backend-conns")
}

func mustProxy(t testing.TB, cfg proxy.Config) http.Handler {
	t.Helper()
	h, err := proxy.New(cfg, discardLog())
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	return h
}

func TestProxyKeepsForwardedChainOnlyFromTrustedPeers(t *testing.T) {
	t.Parallel()
	seen := make(chan []string, 1)
	backend := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Values("X-Forwarded-For")
	}))
	u, _ := url.Parse(backend.URL)
	for _, tt := range []struct {
		name    string
		trusted []string
		want    []string
	}{
		{"untrusted peer: client chain dropped", nil, []string{"127.0.0.1"}},
		{"trusted peer by IP: chain extended", []string{"127.0.0.1"}, []string{"203.0.113.7, 127.0.0.1"}},
		{"trusted peer by CIDR: chain extended", []string{"127.0.0.0/8"}, []string{"203.0.113.7, 127.0.0.1"}},
		{"other network trusted: dropped", []string{"10.0.0.0/8"}, []string{"127.0.0.1"}},
	} {
		srv := httptest.NewServer(mustProxy(t, proxy.Config{Target: u, Timeout: time.Second, TrustedProxies: tt.trusted}))
		testenv.Do(t, nil, http.MethodGet, srv.URL+"/api/movies", nil, http.Header{"X-Forwarded-For": {"203.0.113.7"}})
		srv.Close()
		if diff := cmp.Diff(tt.want, <-seen); diff != "" {
			t.Errorf("%s: X-Forwarded-For at inventory (-want +got):\n%s", tt.name, diff)
		}
	}
	if _, err := proxy.New(proxy.Config{Target: u, TrustedProxies: []string{"not-an-ip"}}, discardLog()); err == nil {
		t.Error("proxy.New accepted a malformed trusted proxy")
	}
}

func TestProxyAddsRequestIDWhenUpstreamDoesNot(t *testing.T) {
	t.Parallel()
	backend := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent) // echoes no request id
	}))
	srv := newEngineGateway(t, backend.URL, time.Second)
	r := testenv.Do(t, nil, http.MethodGet, srv.URL+"/api/movies", nil, nil)
	if ids := r.Header.Values(web.RequestIDHeader); len(ids) != 1 || ids[0] == "" {
		t.Fatalf("X-Request-ID = %q, want exactly one id", ids)
	}
}
