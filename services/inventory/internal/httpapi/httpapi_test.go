package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"moviestream/pkg/testenv"
	"moviestream/pkg/web"
	"moviestream/services/inventory/internal/httpapi"
	"moviestream/services/inventory/internal/movie"
	"moviestream/services/inventory/internal/moviedb"
	"moviestream/services/inventory/internal/moviedb/moviedbtest"
)

// These tests drive the handlers over HTTP with the real store on a fresh
// database. What is checked elsewhere is not repeated here: the field rules
// in movie_test.go, search and storage in moviedb_test.go, media types, JSON
// decoding and the body limit in pkg/web, and the running system in e2e.

const ctJSON = "application/json"

// movieJSON is the wire shape of a movie, as a client sees it.
type movieJSON struct {
	ID          int64  `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description"`
}

// leaks are strings no response body may contain: SQL, driver or database
// errors, stack traces, internal package prefixes.
var leaks = []string{"SQL", "pq:", "ERROR:", "goroutine", "panic", "moviedb:", "gorm", ".go:"}

// api is the inventory's handler served over HTTP, with its log.
type api struct {
	srv    *httptest.Server
	client *http.Client
	log    *testenv.LogBuffer
}

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// newStore returns a migrated store on a fresh database.
func newStore(tb testing.TB) *moviedb.Store {
	tb.Helper()
	store, _ := moviedbtest.Open(tb)
	return store
}

func newAPI(t *testing.T, store movie.Store) *api {
	t.Helper()
	logs := &testenv.LogBuffer{}
	// Registered before the server's Close, so it runs after it: every
	// handler has finished logging by then.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service log:\n%s", logs.String())
		}
	})
	h, err := httpapi.New(store, slog.New(slog.NewTextHandler(logs, nil)), nil)
	if err != nil {
		t.Fatalf("httpapi.New: %v", err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	client := srv.Client()
	client.Timeout = 30 * time.Second
	// Never follow redirects: a redirect must show up as a failure.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &api{srv: srv, client: client, log: logs}
}

// do sends one request; contentType "" sends no Content-Type header.
func (a *api) do(t testing.TB, method, path, contentType, body string) testenv.Response {
	t.Helper()
	header := http.Header{}
	if contentType != "" {
		header.Set("Content-Type", contentType)
	}
	return testenv.Do(t, a.client, method, a.srv.URL+path, strings.NewReader(body), header)
}

// check asserts what every answer shares: the status, no redirect, a JSON
// body without leaked internals and, for an error, exactly the one error
// shape with code and field.
func check(t testing.TB, r testenv.Response, status int, code, field string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("status = %d, want %d; body %.300s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, ctJSON) {
		t.Errorf("Content-Type = %q, want %s", ct, ctJSON)
	}
	if !json.Valid(r.Body) {
		t.Errorf("body is not valid JSON: %.300s", r.Body)
	}
	for _, leak := range leaks {
		if bytes.Contains(r.Body, []byte(leak)) {
			t.Errorf("body leaks %q: %.300s", leak, r.Body)
		}
	}
	if status < 400 {
		return
	}
	var e web.ErrorBody
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error body %.300s is not {\"error\":{...}}: %v", r.Body, err)
	}
	if string(e.Error.Code) != code || e.Error.Field != field || e.Error.Message == "" {
		t.Errorf("error = %+v, want code %q, field %q and a message", e.Error, code, field)
	}
}

// decode reads a success body into a value of type T, refusing fields the
// API does not document.
func decode[T any](t testing.TB, r testenv.Response) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %.300s: %v", r.Body, err)
	}
	return v
}

func seed(t testing.TB, store movie.Store, title string) movieJSON {
	t.Helper()
	m, err := store.Create(testContext(t), title, "about "+title)
	if err != nil {
		t.Fatalf("seed %q: %v", title, err)
	}
	return movieJSON{ID: m.ID, Title: m.Title, Description: m.Description}
}

func itemPath(id int64) string { return "/api/movies/" + strconv.FormatInt(id, 10) }

// TestItemRoutes: each item route and POST answer directly, with and
// without a trailing slash, and what they answer is what is stored. Every
// case works on its own movie.
func TestItemRoutes(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	a := newAPI(t, store)
	tests := []struct {
		name   string
		method string
		zeros  string // before the id
		suffix string // after /api/movies/{id}, or after /api/movies for POST
		body   string
		status int // 0: 200
		// want is the title and description answered and then stored; nil:
		// the movie as seeded (GET, and DELETE, which answers the deleted
		// movie and leaves nothing).
		want *movieJSON
	}{
		{name: "get", method: "GET"},
		{name: "get trailing slash", method: "GET", suffix: "/"},
		{name: "get id with leading zeros", method: "GET", zeros: "000"},
		{name: "post", method: "POST", status: 201, body: `{"title":"Alien","description":"In space."}`,
			want: &movieJSON{Title: "Alien", Description: "In space."}},
		// Title trimmed; id, unknown fields and a null description ignored.
		{name: "post trailing slash", method: "POST", suffix: "/", status: 201,
			body: `{"id":999999,"title":"  Alien ","description":null,"year":1979}`, want: &movieJSON{Title: "Alien"}},
		{name: "post body of exactly 1 MiB", method: "POST", status: 201,
			body: padTo(`{"title":"Big"}`, web.MaxBodyBytes), want: &movieJSON{Title: "Big"}},
		// PUT replaces: an absent description becomes empty.
		{name: "put", method: "PUT", body: `{"title":"Aliens"}`, want: &movieJSON{Title: "Aliens"}},
		{name: "put trailing slash", method: "PUT", suffix: "/", body: `{"id":1,"title":"Aliens","description":"Again."}`,
			want: &movieJSON{Title: "Aliens", Description: "Again."}},
		{name: "delete", method: "DELETE"},
		{name: "delete trailing slash", method: "DELETE", suffix: "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := "/api/movies" + tt.suffix
			var existing movieJSON
			if tt.method != "POST" {
				existing = seed(t, store, "Existing "+tt.name)
				path = "/api/movies/" + tt.zeros + strconv.FormatInt(existing.ID, 10) + tt.suffix
			}
			r := a.do(t, tt.method, path, ctJSON, tt.body)
			status := tt.status
			if status == 0 {
				status = http.StatusOK
			}
			check(t, r, status, "", "")
			got := decode[movieJSON](t, r)

			want := existing
			if tt.want != nil {
				want = movieJSON{ID: existing.ID, Title: tt.want.Title, Description: tt.want.Description}
			}
			if tt.method == "POST" {
				want.ID = got.ID
				if loc := r.Header.Get("Location"); got.ID <= 0 || loc != itemPath(got.ID) {
					t.Errorf("id %d with Location %q, want a new id and its path", got.ID, loc)
				}
			} else if loc := r.Header.Get("Location"); loc != "" {
				t.Errorf("unexpected Location %q", loc)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			after := a.do(t, "GET", itemPath(want.ID), "", "")
			if tt.method == "DELETE" {
				check(t, after, 404, "not_found", "")
				return
			}
			check(t, after, 200, "", "")
			if diff := cmp.Diff(want, decode[movieJSON](t, after)); diff != "" {
				t.Errorf("stored (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCollectionRoutes: list, search and delete all, with and without a
// trailing slash, in order on one table.
func TestCollectionRoutes(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	a := newAPI(t, store)
	empty, deleted := []movieJSON{}, func(n int) map[string]int64 { return map[string]int64{"deleted": int64(n)} }

	list := func(t *testing.T, path string, want []movieJSON) {
		t.Helper()
		r := a.do(t, "GET", path, "", "")
		check(t, r, 200, "", "")
		if diff := cmp.Diff(want, decode[[]movieJSON](t, r)); diff != "" {
			t.Errorf("GET %s (-want +got):\n%s", path, diff)
		}
	}
	deleteAll := func(t *testing.T, path string, n int) {
		t.Helper()
		r := a.do(t, "DELETE", path, "", "")
		check(t, r, 200, "", "")
		if diff := cmp.Diff(deleted(n), decode[map[string]int64](t, r)); diff != "" {
			t.Errorf("DELETE %s (-want +got):\n%s", path, diff)
		}
	}

	list(t, "/api/movies", empty) // an empty array, not null
	alien, heat := seed(t, store, "Alien"), seed(t, store, "Heat")
	list(t, "/api/movies", []movieJSON{alien, heat})
	list(t, "/api/movies/", []movieJSON{alien, heat})
	list(t, "/api/movies?title=LIEN", []movieJSON{alien})
	list(t, "/api/movies/?title=zzz", empty)
	deleteAll(t, "/api/movies/", 2)
	deleteAll(t, "/api/movies", 0)
	list(t, "/api/movies", empty)
}

// TestClientErrors: every error the inventory's adapter answers to a bad
// request, on every kind of route. None of them may change the data.
func TestClientErrors(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	a := newAPI(t, store)
	alien := seed(t, store, "Alien")
	item, unknown := itemPath(alien.ID), itemPath(alien.ID+1000)
	valid := `{"title":"Replaced"}`
	tooLarge := padTo(`{"title":"too large"}`, web.MaxBodyBytes+1)

	tests := []struct {
		name, method, path, contentType, body string
		status                                int
		code, field                           string
	}{
		// Field rules and JSON types name the field.
		{"post without title", "POST", "/api/movies", ctJSON, `{"description":"d"}`, 400, "validation_failed", "title"},
		{"post title of wrong type", "POST", "/api/movies/", ctJSON, `{"title":42}`, 400, "validation_failed", "title"},
		{"post description too long", "POST", "/api/movies", ctJSON, `{"title":"x","description":"` + strings.Repeat("d", movie.MaxDescriptionLen+1) + `"}`, 400, "validation_failed", "description"},
		{"put empty title", "PUT", item + "/", ctJSON, `{"title":""}`, 400, "validation_failed", "title"},
		{"search with NUL", "GET", "/api/movies?title=a%00b", "", "", 400, "validation_failed", "title"},
		{"search with invalid UTF-8", "GET", "/api/movies/?title=%FF", "", "", 400, "validation_failed", "title"},

		{"post empty body", "POST", "/api/movies", ctJSON, "", 400, "invalid_json", ""},
		{"post truncated", "POST", "/api/movies/", ctJSON, `{"title":"x"`, 400, "invalid_json", ""},
		{"post array", "POST", "/api/movies", ctJSON, `[{"title":"x"}]`, 400, "invalid_json", ""},
		{"put trailing data", "PUT", item, ctJSON, `{"title":"x"}}`, 400, "invalid_json", ""},

		// Ids are plain decimal digits, 1 to max int64.
		{"id abc", "GET", "/api/movies/abc", "", "", 400, "invalid_id", ""},
		{"id 0", "GET", "/api/movies/0", "", "", 400, "invalid_id", ""},
		{"id -1", "GET", "/api/movies/-1", "", "", 400, "invalid_id", ""},
		{"id +5", "GET", "/api/movies/+5", "", "", 400, "invalid_id", ""},
		{"id with spaces", "GET", "/api/movies/%205%20", "", "", 400, "invalid_id", ""},
		{"id 1.0", "GET", "/api/movies/1.0", "", "", 400, "invalid_id", ""},
		{"id 0x10", "GET", "/api/movies/0x10", "", "", 400, "invalid_id", ""},
		{"id NUL", "GET", "/api/movies/%00", "", "", 400, "invalid_id", ""},
		{"id max int64 + 1", "GET", "/api/movies/9223372036854775808", "", "", 400, "invalid_id", ""},
		{"id empty", "GET", "/api/movies//", "", "", 400, "invalid_id", ""},
		{"put id abc trailing slash", "PUT", "/api/movies/abc/", ctJSON, valid, 400, "invalid_id", ""},
		{"delete id 0", "DELETE", "/api/movies/0", "", "", 400, "invalid_id", ""},

		{"get unknown id", "GET", unknown, "", "", 404, "not_found", ""},
		{"get max int64", "GET", "/api/movies/9223372036854775807", "", "", 404, "not_found", ""},
		{"put unknown id", "PUT", unknown + "/", ctJSON, valid, 404, "not_found", ""},
		{"delete unknown id", "DELETE", unknown, "", "", 404, "not_found", ""},

		{"post 1 MiB + 1", "POST", "/api/movies", ctJSON, tooLarge, 413, "payload_too_large", ""},
		{"put 1 MiB + 1", "PUT", item, ctJSON, tooLarge, 413, "payload_too_large", ""},

		{"post text/plain", "POST", "/api/movies", "text/plain", valid, 415, "unsupported_media_type", ""},
		{"post without content type", "POST", "/api/movies/", "", valid, 415, "unsupported_media_type", ""},
		{"put without content type", "PUT", item, "", valid, 415, "unsupported_media_type", ""},

		{"patch collection", "PATCH", "/api/movies/", ctJSON, valid, 405, "method_not_allowed", ""},
		{"put collection", "PUT", "/api/movies", ctJSON, valid, 405, "method_not_allowed", ""},
		{"patch item", "PATCH", item, ctJSON, valid, 405, "method_not_allowed", ""},
		{"post item", "POST", item + "/", ctJSON, valid, 405, "method_not_allowed", ""},

		{"unknown route", "GET", "/api/unknown", "", "", 404, "not_found", ""},
		{"nested under item", "GET", item + "/cast", "", "", 404, "not_found", ""},
		{"upper-case path", "GET", "/API/MOVIES", "", "", 404, "not_found", ""},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := a.do(t, tt.method, tt.path, tt.contentType, tt.body)
				check(t, r, tt.status, tt.code, tt.field)
				if tt.code == "not_found" && strings.HasPrefix(tt.path, "/api/movies/") &&
					!strings.Contains(string(r.Body), strings.Trim(strings.TrimPrefix(tt.path, "/api/movies/"), "/")) {
					t.Errorf("message does not name the id: %s", r.Body)
				}
			})
		}
	})
	r := a.do(t, "GET", "/api/movies", "", "")
	if diff := cmp.Diff([]movieJSON{alien}, decode[[]movieJSON](t, r)); diff != "" {
		t.Errorf("data changed by bad requests (-want +got):\n%s", diff)
	}
}

// failingStore fails every call with err.
type failingStore struct{ err error }

func (s failingStore) Each(context.Context, movie.Filter, func(movie.Movie) error) error {
	return s.err
}
func (s failingStore) Get(context.Context, int64) (movie.Movie, error) { return movie.Movie{}, s.err }
func (s failingStore) Create(context.Context, string, string) (movie.Movie, error) {
	return movie.Movie{}, s.err
}
func (s failingStore) Update(context.Context, int64, string, string) (movie.Movie, error) {
	return movie.Movie{}, s.err
}
func (s failingStore) Delete(context.Context, int64) (movie.Movie, error) {
	return movie.Movie{}, s.err
}
func (s failingStore) DeleteAll(context.Context) (int64, error) { return 0, s.err }

// TestStoreFailures: an unreachable store is 503 on every data route; any
// other store error is 500 "internal error". The cause goes to the log,
// never to the client.
func TestStoreFailures(t *testing.T) {
	t.Parallel()
	const secret = `pq: relation "movies" does not exist (SQLSTATE 42P01)`
	stores := []struct {
		name    string
		err     error
		status  int
		code    string
		message string
	}{
		{"unavailable", fmt.Errorf("moviedb: list: %w: %s", movie.ErrUnavailable, secret), 503, "service_unavailable", ""},
		{"unexpected", fmt.Errorf("moviedb: get: %w", errors.New(secret)), 500, "internal_error", "internal error"},
	}
	routes := []struct{ method, path, body string }{
		{"GET", "/api/movies", ""},
		{"GET", "/api/movies/?title=a", ""},
		{"GET", "/api/movies?limit=10&after_id=5", ""},
		{"POST", "/api/movies", `{"title":"x"}`},
		{"DELETE", "/api/movies/", ""},
		{"GET", "/api/movies/1", ""},
		{"PUT", "/api/movies/1/", `{"title":"x"}`},
		{"DELETE", "/api/movies/1", ""},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			a := newAPI(t, failingStore{err: st.err})
			for _, rt := range routes {
				r := a.do(t, rt.method, rt.path, ctJSON, rt.body)
				check(t, r, st.status, st.code, "")
				if e := decode[web.ErrorBody](t, r); st.message != "" && e.Error.Message != st.message {
					t.Errorf("%s %s: message %q, want %q", rt.method, rt.path, e.Error.Message, st.message)
				}
			}
			// Bad requests are refused before the store is asked.
			check(t, a.do(t, "GET", "/api/movies/abc", "", ""), 400, "invalid_id", "")
			check(t, a.do(t, "POST", "/api/movies", ctJSON, `{}`), 400, "validation_failed", "title")
			a.srv.Close() // waits for every handler, so each failure has been logged
			if n := strings.Count(a.log.String(), "42P01"); n != len(routes) {
				t.Errorf("the cause is logged %d times, want once per request (%d):\n%s", n, len(routes), a.log)
			}
		})
	}
}

// TestConcurrentCreates: creates from many clients at once all get their
// own id, and all are stored.
func TestConcurrentCreates(t *testing.T) {
	t.Parallel()
	a := newAPI(t, newStore(t))
	const total = 100
	ids := make([]int64, total)
	var wg sync.WaitGroup
	for i := range total {
		wg.Go(func() {
			req, err := http.NewRequest("POST", a.srv.URL+"/api/movies", strings.NewReader(fmt.Sprintf(`{"title":"concurrent %d"}`, i)))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Content-Type", ctJSON)
			r, err := testenv.Send(a.client, req)
			var m movieJSON
			if err == nil {
				err = json.Unmarshal(r.Body, &m)
			}
			if err != nil || r.Status != http.StatusCreated || m.Title != fmt.Sprintf("concurrent %d", i) {
				t.Errorf("create %d: status %d, %+v, %v", i, r.Status, m, err)
			}
			ids[i] = m.ID
		})
	}
	wg.Wait()
	seen := map[int64]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	listed := decode[[]movieJSON](t, a.do(t, "GET", "/api/movies", "", ""))
	if len(seen) != total || len(listed) != total {
		t.Errorf("%d distinct ids answered and %d movies listed, want %d", len(seen), len(listed), total)
	}
}

// padTo pads a JSON document with trailing spaces to exactly n bytes.
func padTo(doc string, n int) string { return doc + strings.Repeat(" ", n-len(doc)) }

// BenchmarkGetMovie measures GET /api/movies/{id} through the full handler
// (middleware, routing, real store, JSON) on a real database.
func BenchmarkGetMovie(b *testing.B) {
	store := newStore(b)
	m, err := store.Create(testContext(b), "Alien", strings.Repeat("In space no one can hear you scream. ", 10))
	if err != nil {
		b.Fatalf("Create: %v", err)
	}
	h, err := httpapi.New(store, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatalf("httpapi.New: %v", err)
	}
	req := httptest.NewRequestWithContext(testContext(b), "GET", itemPath(m.ID), nil)
	b.ReportAllocs()
	for b.Loop() {
		req.Header.Del("X-Request-ID") // as for a client request: the service assigns one
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
