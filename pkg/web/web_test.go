package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"moviestream/pkg/errs"
	"moviestream/pkg/web"
)

func TestRequireJSON(t *testing.T) {
	t.Parallel()
	for ct, ok := range map[string]bool{
		"application/json":                  true,
		"application/json; charset=utf-8":   true,
		"Application/JSON":                  true,
		"application/merge-patch+json":      true,
		"":                                  false,
		"text/plain":                        false,
		"application/x-www-form-urlencoded": false,
		"application/jsonx":                 false,
		"multipart/form-data; boundary=x":   false,
		";;;":                               false,
	} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		err := web.RequireJSON(r)
		if ok && err != nil {
			t.Errorf("%q rejected: %v", ct, err)
		}
		if !ok && !errors.Is(err, web.ErrMediaType) {
			t.Errorf("%q: err = %v, want ErrMediaType", ct, err)
		}
	}
}

func TestDecodeObject(t *testing.T) {
	t.Parallel()
	type target struct {
		Title *string `json:"title"`
		N     int     `json:"n"`
	}
	tests := []struct {
		body      string
		wantErr   error
		wantField string
	}{
		{`{"title":"x","n":1}`, nil, ""},
		{`  {"title":"x"}  `, nil, ""},
		{``, web.ErrSyntax, ""},
		{`[]`, web.ErrSyntax, ""},
		{`"str"`, web.ErrSyntax, ""},
		{`{"title":`, web.ErrSyntax, ""},
		{`{"title":"x"} {}`, web.ErrSyntax, ""},
		{`{"title":"x",}`, web.ErrSyntax, ""},
		{`{"title":"x"}}`, web.ErrSyntax, ""},
		{`{"title":"x"}]`, web.ErrSyntax, ""},
		{"{\"title\":\"\xff\"}", web.ErrSyntax, ""},
		{`{"title":5}`, nil, "title"},
		{`{"n":"five"}`, nil, "n"},
		{`{"n":1.5}`, nil, "n"},
	}
	for _, tt := range tests {
		var dst target
		err := web.DecodeObject([]byte(tt.body), &dst)
		var fe *errs.FieldError
		switch {
		case tt.wantField != "":
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Errorf("%q: err = %v, want FieldError on %s", tt.body, err, tt.wantField)
			}
		case tt.wantErr != nil:
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%q: err = %v, want %v", tt.body, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("%q: unexpected error %v", tt.body, err)
		}
	}
}

func TestReadBodyLimit(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("a", 11)))
	if _, err := web.ReadBody(w, r, 10); !errors.Is(err, web.ErrTooLarge) {
		t.Fatalf("11 bytes with limit 10: err = %v, want ErrTooLarge", err)
	}
	r = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("a", 10)))
	if b, err := web.ReadBody(w, r, 10); err != nil || len(b) != 10 {
		t.Fatalf("10 bytes with limit 10: %d bytes, %v", len(b), err)
	}
}

// TestReadBodyIncomplete: a body that ends before its announced length or
// times out is the client's fault, never an internal error.
func TestReadBodyIncomplete(t *testing.T) {
	t.Parallel()
	for _, cause := range []error{io.ErrUnexpectedEOF, os.ErrDeadlineExceeded, errors.New("connection reset by peer")} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/", io.MultiReader(strings.NewReader(`{"ti`), iotest.ErrReader(cause)))
		_, err := web.ReadBody(w, r, 10)
		if !errors.Is(err, web.ErrIncompleteBody) || !errors.Is(err, cause) {
			t.Errorf("body failing with %v: err = %v, want ErrIncompleteBody wrapping the cause", cause, err)
		}
		if got := web.Classify(err, nil); got.Code != errs.IncompleteBody || web.Status(got.Code) != http.StatusBadRequest {
			t.Errorf("body failing with %v: classified %+v, want %s (400)", cause, got, errs.IncompleteBody)
		}
	}
}

func TestWriteErrorShape(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	web.WriteError(w, &errs.Error{Code: errs.NotFound, Message: "movie 42 not found"})
	if w.Code != http.StatusNotFound || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, content type %q", w.Code, w.Header().Get("Content-Type"))
	}
	if got, want := strings.TrimSpace(w.Body.String()), `{"error":{"code":"not_found","message":"movie 42 not found"}}`; got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
}

func TestServeDrainsInFlightRequestsOnShutdown(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "done")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	srv := web.NewServer(web.ServerConfig{}, h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go func() { served <- web.ServeListeners(ctx, srv, []net.Listener{ln}, 10*time.Second) }()

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-started
	cancel() // the signal arrives while a request is in flight
	close(release)
	if body := <-got; body != "done" {
		t.Fatalf("in-flight request got %q, want it completed", body)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if srv.ReadHeaderTimeout == 0 || srv.ReadTimeout == 0 || srv.WriteTimeout == 0 || srv.IdleTimeout == 0 {
		t.Error("a server timeout is unset")
	}
}

// One handler on two listeners (loopback plus another address on a VM):
// both answer, and one signal stops both, draining what is in flight.
func TestListenAndServeOnSeveralAddresses(t *testing.T) {
	t.Parallel()
	// Two free ports on two loopback addresses, then released for the server.
	var addrs []string
	for _, host := range []string{"127.0.0.1", "127.0.0.2"} {
		ln, err := net.Listen("tcp", host+":0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		ln.Close()
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { served <- web.ListenAndServe(ctx, web.ServerConfig{Addrs: addrs}, h, log) }()
	for _, addr := range addrs {
		var body string
		deadline := time.Now().Add(10 * time.Second)
		for body != "ok" && time.Now().Before(deadline) {
			if resp, err := http.Get("http://" + addr); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body = string(b)
			} else {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if body != "ok" {
			t.Fatalf("%s did not answer", addr)
		}
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("ListenAndServe: %v", err)
	}
	for _, addr := range addrs {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			t.Errorf("%s still accepts after shutdown", addr)
		}
	}
}

func TestListenFailsNamingTheAddressAndClosesTheOthers(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = web.Listen([]string{"127.0.0.1:0", busy.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("Listen = %v, want an error naming %s", err, busy.Addr())
	}
}

func TestGateAnswers503UntilOpenExceptLiveness(t *testing.T) {
	t.Parallel()
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "next") })
	g := web.NewGate(next, "/health", "storage unavailable")
	serve := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		g.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w
	}
	if w := serve("/health"); w.Code != http.StatusOK || w.Body.String() != "next" {
		t.Errorf("closed gate, /health: %d %q, want it passed through", w.Code, w.Body)
	}
	w := serve("/api/movies")
	var body web.ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != http.StatusServiceUnavailable || body.Error.Code != errs.Unavailable {
		t.Errorf("closed gate, /api/movies: %d %s, want 503 %s", w.Code, w.Body, errs.Unavailable)
	}
	g.Open()
	if w := serve("/api/movies"); w.Code != http.StatusOK || w.Body.String() != "next" {
		t.Errorf("open gate: %d %q, want it passed through", w.Code, w.Body)
	}
}

// TestStatusTable: every code has its own status, and the shared errors
// classify the same way in every adapter.
func TestStatusTable(t *testing.T) {
	t.Parallel()
	for code, want := range map[errs.Code]int{
		errs.InvalidJSON: 400, errs.Validation: 400, errs.InvalidID: 400, errs.InvalidHeader: 400,
		errs.InvalidPath: 400, errs.IncompleteBody: 400, errs.Unauthorized: 401,
		errs.NotFound: 404, errs.MethodNotAllowed: 405, errs.TooLarge: 413, errs.MediaType: 415,
		errs.Internal: 500, errs.BadGateway: 502, errs.Unavailable: 503, errs.GatewayTimeout: 504,
		"no_such_code": 500,
	} {
		if got := web.Status(code); got != want {
			t.Errorf("Status(%s) = %d, want %d", code, got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	errDomain := errors.New("domain thing")
	domain := func(err error) *errs.Error {
		if errors.Is(err, errDomain) {
			return &errs.Error{Code: errs.NotFound, Message: "thing not found"}
		}
		return nil
	}
	for _, tt := range []struct {
		err       error
		code      errs.Code
		field     string
		hideCause bool
	}{
		{fmt.Errorf("get: %w", errDomain), errs.NotFound, "", false},
		{fmt.Errorf("decode: %w", &errs.FieldError{Field: "title", Reason: "is required"}), errs.Validation, "title", false},
		{fmt.Errorf("%w: at byte 3", web.ErrSyntax), errs.InvalidJSON, "", false},
		{fmt.Errorf("%w: limit", web.ErrTooLarge), errs.TooLarge, "", false},
		{web.ErrMediaType, errs.MediaType, "", false},
		{fmt.Errorf("%w: read tcp 10.0.0.1:3000: secret i/o timeout", web.ErrIncompleteBody), errs.IncompleteBody, "", true},
		{fmt.Errorf("x: %w", &errs.Error{Code: errs.InvalidHeader, Message: "bad", Field: "H"}), errs.InvalidHeader, "H", false},
		{errors.New("pq: secret detail"), errs.Internal, "", true},
	} {
		got := web.Classify(tt.err, domain)
		if got.Code != tt.code || got.Field != tt.field {
			t.Errorf("Classify(%v) = %+v, want code %s field %q", tt.err, got, tt.code, tt.field)
		}
		if tt.hideCause && strings.Contains(got.Message, "secret") {
			t.Errorf("Classify(%v) leaks the cause: %q", tt.err, got.Message)
		}
	}
}

func TestHealthMux(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	mux := web.HealthMux(func() (bool, any) { return ready.Load(), map[string]bool{"connected": ready.Load()} })
	get := func(path string) (int, string) {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w.Code, strings.TrimSpace(w.Body.String())
	}
	if code, body := get("/health"); code != 200 || body != `{"status":"ok"}` {
		t.Errorf("/health = %d %s", code, body)
	}
	if code, body := get("/ready"); code != 503 || body != `{"connected":false}` {
		t.Errorf("/ready while not ready = %d %s", code, body)
	}
	ready.Store(true)
	if code, body := get("/ready"); code != 200 || body != `{"connected":true}` {
		t.Errorf("/ready when ready = %d %s", code, body)
	}
	if code, _ := get("/metrics-or-anything"); code != 404 {
		t.Errorf("unknown path = %d, want 404", code)
	}
}
