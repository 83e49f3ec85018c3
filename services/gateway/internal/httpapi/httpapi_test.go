package httpapi_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"moviestream/pkg/broker"
	"moviestream/pkg/errs"
	"moviestream/pkg/web"
	"moviestream/services/gateway/internal/httpapi"
)

// hit is one request a fake adapter received.
type hit struct {
	Handler    string
	Method     string
	RequestURI string
	Path       string
	RawQuery   string
	Body       string
}

// recorder records the requests reaching the fake adapters.
type recorder struct {
	mu   sync.Mutex
	hits []hit
}

func (rec *recorder) add(name string, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.hits = append(rec.hits, hit{
		Handler: name, Method: r.Method, RequestURI: r.RequestURI,
		Path: r.URL.Path, RawQuery: r.URL.RawQuery, Body: string(body),
	})
}

func (rec *recorder) all() []hit {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]hit(nil), rec.hits...)
}

// newHandler builds the gateway's routes over fakes; connected drives /ready.
func newHandler(t *testing.T, status broker.Status) (http.Handler, *recorder) {
	t.Helper()
	rec := &recorder{}
	h, err := httpapi.New(httpapi.Deps{
		Movies: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec.add("movies", r)
			w.WriteHeader(http.StatusTeapot) // proves the answer is the adapter's
		}),
		PostBilling: func(c *gin.Context) {
			rec.add("billing", c.Request)
			c.Status(http.StatusAccepted)
		},
		Ready: status.Readiness,
	}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatalf("httpapi.New: %v", err)
	}
	return h, rec
}

func serve(h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// jsonBody decodes a JSON response into a generic value for cmp.
func jsonBody(t *testing.T, w *httptest.ResponseRecorder) any {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var v any
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("body %q is not JSON: %v", w.Body, err)
	}
	return v
}

func TestHealthAndReady(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		broker broker.Status
		target string
		status int
		body   string
	}{
		{name: "health while connected", broker: broker.Status{Connected: true}, target: "/health",
			status: http.StatusOK, body: `{"status":"ok"}`},
		{name: "health does not depend on the broker", broker: broker.Status{Error: "down"}, target: "/health",
			status: http.StatusOK, body: `{"status":"ok"}`},
		{name: "ready when connected", broker: broker.Status{Connected: true}, target: "/ready",
			status: http.StatusOK, body: `{"rabbitmq":{"connected":true}}`},
		{name: "not ready when disconnected", broker: broker.Status{Error: "reconnecting to rabbitmq"}, target: "/ready",
			status: http.StatusServiceUnavailable, body: `{"rabbitmq":{"connected":false,"error":"reconnecting to rabbitmq"}}`},
		{name: "not ready before the first connection", broker: (&broker.StatusBox{}).Get(), target: "/ready",
			status: http.StatusServiceUnavailable, body: `{"rabbitmq":{"connected":false,"error":"not connected yet"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, rec := newHandler(t, tt.broker)
			w := serve(h, http.MethodGet, tt.target, "")
			if w.Code != tt.status {
				t.Errorf("status = %d, want %d", w.Code, tt.status)
			}
			var want any
			if err := json.Unmarshal([]byte(tt.body), &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, jsonBody(t, w)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if n := len(rec.all()); n != 0 {
				t.Errorf("%d requests reached an adapter", n)
			}
			if ids := w.Header().Values(web.RequestIDHeader); len(ids) != 1 || ids[0] == "" {
				t.Errorf("X-Request-ID = %q, want one id", ids)
			}
		})
	}
}

func TestRouteErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		target string
		status int
		code   errs.Code
	}{
		{name: "unknown route", method: http.MethodGet, target: "/nope", status: http.StatusNotFound, code: errs.NotFound},
		{name: "root", method: http.MethodGet, target: "/", status: http.StatusNotFound, code: errs.NotFound},
		{name: "api prefix only", method: http.MethodGet, target: "/api", status: http.StatusNotFound, code: errs.NotFound},
		{name: "movies prefix lookalike", method: http.MethodGet, target: "/api/moviesx", status: http.StatusNotFound, code: errs.NotFound},
		{name: "billing sub-path", method: http.MethodPost, target: "/api/billing/1", status: http.StatusNotFound, code: errs.NotFound},
		{name: "GET billing", method: http.MethodGet, target: "/api/billing", status: http.StatusMethodNotAllowed, code: errs.MethodNotAllowed},
		{name: "GET billing slash", method: http.MethodGet, target: "/api/billing/", status: http.StatusMethodNotAllowed, code: errs.MethodNotAllowed},
		{name: "PUT billing", method: http.MethodPut, target: "/api/billing", status: http.StatusMethodNotAllowed, code: errs.MethodNotAllowed},
		{name: "DELETE billing", method: http.MethodDelete, target: "/api/billing", status: http.StatusMethodNotAllowed, code: errs.MethodNotAllowed},
		{name: "POST health", method: http.MethodPost, target: "/health", status: http.StatusMethodNotAllowed, code: errs.MethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, rec := newHandler(t, broker.Status{Connected: true})
			w := serve(h, tt.method, tt.target, `{}`)
			if w.Code != tt.status {
				t.Errorf("status = %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			var got web.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q is not the JSON error shape: %v", w.Body, err)
			}
			if got.Error.Code != tt.code || got.Error.Message == "" {
				t.Errorf("error = %+v, want code %q with a message", got.Error, tt.code)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if n := len(rec.all()); n != 0 {
				t.Errorf("%d requests reached an adapter", n)
			}
		})
	}
}

func TestMoviesReachProxy(t *testing.T) {
	t.Parallel()
	targets := []struct{ target, path, query string }{
		{target: "/api/movies", path: "/api/movies"},
		{target: "/api/movies/", path: "/api/movies/"},
		{target: "/api/movies/42", path: "/api/movies/42"},
		{target: "/api/movies/anything/deeper?x=1", path: "/api/movies/anything/deeper", query: "x=1"},
		{target: "/api/movies?title=The%20Matrix&genre=a&genre=b", path: "/api/movies", query: "title=The%20Matrix&genre=a&genre=b"},
		{target: "/api/movies/a%2Fb?q=%26", path: "/api/movies/a/b", query: "q=%26"},
	}
	methods := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead, http.MethodOptions}
	for _, tg := range targets {
		for _, method := range methods {
			t.Run(method+" "+tg.target, func(t *testing.T) {
				t.Parallel()
				h, rec := newHandler(t, broker.Status{})
				w := serve(h, method, tg.target, `{"title":"Alien"}`)
				if w.Code != http.StatusTeapot {
					t.Errorf("status = %d, want the movies handler's 418; body %s", w.Code, w.Body)
				}
				want := []hit{{
					Handler: "movies", Method: method, RequestURI: tg.target,
					Path: tg.path, RawQuery: tg.query, Body: `{"title":"Alien"}`,
				}}
				if diff := cmp.Diff(want, rec.all()); diff != "" {
					t.Errorf("adapter calls (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestBillingReachesPostBilling(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"/api/billing", "/api/billing/", "/api/billing?source=web"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			h, rec := newHandler(t, broker.Status{})
			w := serve(h, http.MethodPost, target, `{"user_id":"3"}`)
			if w.Code != http.StatusAccepted {
				t.Errorf("status = %d, want the billing handler's 202; body %s", w.Code, w.Body)
			}
			got := rec.all()
			if len(got) != 1 || got[0].Handler != "billing" || got[0].Method != http.MethodPost ||
				got[0].RequestURI != target || got[0].Body != `{"user_id":"3"}` {
				t.Errorf("adapter calls = %+v, want one POST %s to billing with the body", got, target)
			}
		})
	}
}

func TestNewRejectsBadTrustedProxies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		proxies []string
		wantErr bool
	}{
		{name: "none", proxies: nil},
		{name: "ip and cidr", proxies: []string{"127.0.0.1", "10.0.0.0/8"}},
		{name: "not an address", proxies: []string{"proxy.example"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := httpapi.New(httpapi.Deps{
				Movies:      http.NotFoundHandler(),
				PostBilling: func(*gin.Context) {},
				Ready:       broker.Status{}.Readiness,
			}, slog.New(slog.DiscardHandler), tt.proxies)
			if (err != nil) != tt.wantErr {
				t.Errorf("err = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}
