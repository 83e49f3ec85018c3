package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

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
		var fe *web.FieldError
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

func TestWriteErrorShape(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	web.WriteError(w, http.StatusNotFound, web.ErrorDetail{Code: web.CodeNotFound, Message: "movie 42 not found"})
	if w.Code != http.StatusNotFound || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, content type %q", w.Code, w.Header().Get("Content-Type"))
	}
	if got, want := strings.TrimSpace(w.Body.String()), `{"error":{"code":"not_found","message":"movie 42 not found"}}`; got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
}

func TestEngineRoutingErrorsAreJSON(t *testing.T) {
	t.Parallel()
	e, err := web.NewEngine(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.GET("/only-get", web.Health)
	e.GET("/panics", func(*gin.Context) { panic("boom") })
	srv := httptest.NewServer(e)
	defer srv.Close()
	for path, want := range map[string]struct {
		method, code string
		status       int
	}{
		"/nope":     {http.MethodGet, web.CodeNotFound, http.StatusNotFound},
		"/only-get": {http.MethodPost, web.CodeMethodNotAllowed, http.StatusMethodNotAllowed},
		"/panics":   {http.MethodGet, web.CodeInternal, http.StatusInternalServerError},
	} {
		req, _ := http.NewRequest(want.method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body web.ErrorBody
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != want.status || body.Error.Code != want.code {
			t.Errorf("%s %s: status %d code %q (%v), want %d %q", want.method, path, resp.StatusCode, body.Error.Code, err, want.status, want.code)
		}
		if resp.Header.Get(web.RequestIDHeader) == "" {
			t.Errorf("%s %s: no %s header", want.method, path, web.RequestIDHeader)
		}
		if strings.Contains(body.Error.Message, "boom") {
			t.Errorf("panic detail leaked to the client: %q", body.Error.Message)
		}
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
	go func() { served <- web.Serve(ctx, srv, ln, 10*time.Second) }()

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
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != http.StatusServiceUnavailable || body.Error.Code != web.CodeUnavailable {
		t.Errorf("closed gate, /api/movies: %d %s, want 503 %s", w.Code, w.Body, web.CodeUnavailable)
	}
	g.Open()
	if w := serve("/api/movies"); w.Code != http.StatusOK || w.Body.String() != "next" {
		t.Errorf("open gate: %d %q, want it passed through", w.Code, w.Body)
	}
}
