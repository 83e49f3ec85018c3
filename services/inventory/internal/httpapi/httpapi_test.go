package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"

	"moviestream/pkg/pgdb"
	"moviestream/pkg/pgdb/pgtest"
	"moviestream/services/inventory/internal/httpapi"
	"moviestream/services/inventory/internal/movie"
	"moviestream/services/inventory/internal/moviedb"
)

const maxBody = 1 << 20 // 1 MiB, the documented limit

// movieJSON is the wire shape of a movie, as a client sees it.
type movieJSON struct {
	ID          int64  `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description"`
}

type errorJSON struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

// leaks are strings no response body may contain: SQL, driver or database
// errors, stack traces, internal package prefixes.
var leaks = []string{"SQL", "pq:", "ERROR:", "goroutine", "panic", "moviedb:", "gorm", ".go:"}

// logBuffer collects the service log; a failing test prints it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testServer struct {
	srv    *httptest.Server
	client *http.Client
	store  *moviedb.Store
	log    *logBuffer
}

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// newServer serves the real handler over the real store on a fresh database.
func newServer(t *testing.T) *testServer {
	t.Helper()
	s, _ := newServerDB(t)
	return s
}

// newServerDB is newServer that also returns the database handle, for
// tests that break the database on purpose.
func newServerDB(t *testing.T) (*testServer, *gorm.DB) {
	t.Helper()
	db := pgtest.Open(t)
	store := moviedb.New(db)
	if err := store.Migrate(testContext(t)); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return serve(t, store), db
}

func serve(t *testing.T, store *moviedb.Store) *testServer {
	t.Helper()
	logs := &logBuffer{}
	// Registered before the server's Close, so it runs after it: every
	// handler has finished logging by then.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service log:\n%s", logs.String())
		}
	})
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := httpapi.New(store, log, nil)
	if err != nil {
		t.Fatalf("httpapi.New: %v", err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	client := srv.Client()
	client.Timeout = 30 * time.Second
	// Never follow redirects: a redirect must show up as a failure.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &testServer{srv: srv, client: client, store: store, log: logs}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request. contentType "" sends no Content-Type header.
func (s *testServer) do(t testing.TB, method, path, contentType string, body []byte) response {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(testContext(t), method, s.srv.URL+path, r)
	if err != nil {
		t.Fatalf("new request %s %s: %v", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// checkEnvelope asserts what every response shares: not a redirect, a JSON
// body, no leaked internals, and the error shape when status >= 400.
func checkEnvelope(t testing.TB, r response, wantStatus int, wantCode, wantField string) {
	t.Helper()
	if r.status >= 300 && r.status < 400 {
		t.Errorf("status %d is a redirect to %q; routes must answer directly", r.status, r.header.Get("Location"))
	}
	if r.status != wantStatus {
		t.Errorf("status = %d, want %d; body %s", r.status, wantStatus, truncate(r.body))
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if !json.Valid(r.body) {
		t.Errorf("body is not valid JSON: %s", truncate(r.body))
	}
	for _, leak := range leaks {
		if bytes.Contains(r.body, []byte(leak)) {
			t.Errorf("body leaks %q: %s", leak, truncate(r.body))
		}
	}
	if wantStatus < 400 {
		return
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &top); err != nil || len(top) != 1 || top["error"] == nil {
		t.Fatalf("error body %s is not {\"error\":{...}}", truncate(r.body))
	}
	var e errorJSON
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error body %s: %v", truncate(r.body), err)
	}
	if e.Error.Code != wantCode {
		t.Errorf("error code = %q, want %q (message %q)", e.Error.Code, wantCode, e.Error.Message)
	}
	if e.Error.Field != wantField {
		t.Errorf("error field = %q, want %q (message %q)", e.Error.Field, wantField, e.Error.Message)
	}
	if e.Error.Message == "" {
		t.Errorf("error message is empty")
	}
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + fmt.Sprintf("... (%d bytes)", len(b))
	}
	return string(b)
}

func decodeMovie(t testing.TB, body []byte) movieJSON {
	t.Helper()
	var m movieJSON
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode movie %s: %v", truncate(body), err)
	}
	return m
}

func decodeList(t testing.TB, body []byte) []movieJSON {
	t.Helper()
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		t.Fatalf("list body is null, want an array")
	}
	var ms []movieJSON
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ms); err != nil {
		t.Fatalf("decode list %s: %v", truncate(body), err)
	}
	return ms
}

func toJSON(m movie.Movie) movieJSON {
	return movieJSON{ID: m.ID, Title: m.Title, Description: m.Description}
}

func seed(t *testing.T, s *moviedb.Store, titles ...string) []movieJSON {
	t.Helper()
	out := []movieJSON{}
	for _, title := range titles {
		m, err := s.Create(testContext(t), title, "about "+title)
		if err != nil {
			t.Fatalf("seed %q: %v", title, err)
		}
		out = append(out, toJSON(m))
	}
	return out
}

func (s *testServer) list(t *testing.T) []movieJSON {
	t.Helper()
	r := s.do(t, http.MethodGet, "/api/movies", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /api/movies = %d %s", r.status, truncate(r.body))
	}
	return decodeList(t, r.body)
}

// jsonBody builds a request body from key/value pairs, marshalled by
// encoding/json (so strings are properly escaped).
func jsonBody(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b)
}

// padTo pads a JSON document with trailing spaces to exactly n bytes.
func padTo(doc string, n int) string {
	return doc + strings.Repeat(" ", n-len(doc))
}

const (
	ctJSON = "application/json"
)

// TestBadInputAndReads is the main table: reads that succeed and every kind
// of bad request. None of them may change the data.
func TestBadInputAndReads(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	seeded := seed(t, s.store, "Alien", "Heat", "100% pure", "a_b", `back\slash`)
	alien, pure, underscore, backslash := seeded[0], seeded[2], seeded[3], seeded[4]
	id := strconv.FormatInt(alien.ID, 10)
	unknown := strconv.FormatInt(seeded[len(seeded)-1].ID+1000, 10)
	valid := `{"title":"Replaced","description":"should never be stored"}`
	tooLarge := padTo(`{"title":"too large"}`, maxBody+1)

	type tc struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		wantStatus  int
		wantCode    string
		wantField   string
		want        any // decoded success body, when checked
	}
	tests := []tc{
		// Reads that succeed.
		{name: "list all ordered by id", method: "GET", path: "/api/movies", wantStatus: 200, want: seeded},
		{name: "list all trailing slash", method: "GET", path: "/api/movies/", wantStatus: 200, want: seeded},
		{name: "search case-insensitive", method: "GET", path: "/api/movies?title=ALIEN", wantStatus: 200, want: []movieJSON{alien}},
		{name: "search trailing slash", method: "GET", path: "/api/movies/?title=aLiEn", wantStatus: 200, want: []movieJSON{alien}},
		{name: "search percent literal", method: "GET", path: "/api/movies?title=%25", wantStatus: 200, want: []movieJSON{pure}},
		{name: "search underscore literal", method: "GET", path: "/api/movies?title=_", wantStatus: 200, want: []movieJSON{underscore}},
		{name: "search backslash literal", method: "GET", path: "/api/movies?title=%5C", wantStatus: 200, want: []movieJSON{backslash}},
		{name: "search no match is an empty array", method: "GET", path: "/api/movies?title=zzz", wantStatus: 200, want: []movieJSON{}},
		{name: "search empty lists all", method: "GET", path: "/api/movies?title=", wantStatus: 200, want: seeded},
		{name: "search SQL-looking text", method: "GET", path: "/api/movies?title=%27%3B+DROP+TABLE+movies%3B--", wantStatus: 200, want: []movieJSON{}},
		{name: "get by id", method: "GET", path: "/api/movies/" + id, wantStatus: 200, want: alien},
		{name: "get by id trailing slash", method: "GET", path: "/api/movies/" + id + "/", wantStatus: 200, want: alien},
		{name: "get by id with leading zeros", method: "GET", path: "/api/movies/000" + id, wantStatus: 200, want: alien},

		// Search input the database cannot take.
		{name: "search with NUL", method: "GET", path: "/api/movies?title=a%00b", wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "search with invalid UTF-8", method: "GET", path: "/api/movies?title=%FF", wantStatus: 400, wantCode: "validation_failed", wantField: "title"},

		// Invalid ids, on every method that takes one.
		{name: "get id abc", method: "GET", path: "/api/movies/abc", wantStatus: 400, wantCode: "invalid_id"},
		{name: "get id 0", method: "GET", path: "/api/movies/0", wantStatus: 400, wantCode: "invalid_id"},
		{name: "get id -1", method: "GET", path: "/api/movies/-1", wantStatus: 400, wantCode: "invalid_id"},
		{name: "get id beyond int64", method: "GET", path: "/api/movies/99999999999999999999", wantStatus: 400, wantCode: "invalid_id"},
		{name: "get id max int64 + 1", method: "GET", path: "/api/movies/9223372036854775808", wantStatus: 400, wantCode: "invalid_id"},
		{name: "get id +5", method: "GET", path: "/api/movies/+5", wantStatus: 400, wantCode: "invalid_id"},
		{name: "get id with leading space", method: "GET", path: "/api/movies/%205", wantStatus: 400, wantCode: "invalid_id"},
		{name: "get id with trailing space", method: "GET", path: "/api/movies/5%20", wantStatus: 400, wantCode: "invalid_id"},
		{name: "get id 1.0", method: "GET", path: "/api/movies/1.0", wantStatus: 400, wantCode: "invalid_id"},
		{name: "get id 0x10", method: "GET", path: "/api/movies/0x10", wantStatus: 400, wantCode: "invalid_id"},
		{name: "get id NUL", method: "GET", path: "/api/movies/%00", wantStatus: 400, wantCode: "invalid_id"},
		{name: "get id invalid UTF-8", method: "GET", path: "/api/movies/%FF", wantStatus: 400, wantCode: "invalid_id"},
		{name: "get id abc trailing slash", method: "GET", path: "/api/movies/abc/", wantStatus: 400, wantCode: "invalid_id"},
		{name: "put id abc", method: "PUT", path: "/api/movies/abc", contentType: ctJSON, body: valid, wantStatus: 400, wantCode: "invalid_id"},
		{name: "put id 0 trailing slash", method: "PUT", path: "/api/movies/0/", contentType: ctJSON, body: valid, wantStatus: 400, wantCode: "invalid_id"},
		{name: "delete id -1", method: "DELETE", path: "/api/movies/-1", wantStatus: 400, wantCode: "invalid_id"},
		{name: "delete id +5 trailing slash", method: "DELETE", path: "/api/movies/+5/", wantStatus: 400, wantCode: "invalid_id"},

		// Unknown ids.
		{name: "get unknown id", method: "GET", path: "/api/movies/" + unknown, wantStatus: 404, wantCode: "not_found"},
		{name: "get max int64", method: "GET", path: "/api/movies/9223372036854775807", wantStatus: 404, wantCode: "not_found"},
		{name: "get unknown id trailing slash", method: "GET", path: "/api/movies/" + unknown + "/", wantStatus: 404, wantCode: "not_found"},
		{name: "put unknown id", method: "PUT", path: "/api/movies/" + unknown, contentType: ctJSON, body: valid, wantStatus: 404, wantCode: "not_found"},
		{name: "put unknown id trailing slash", method: "PUT", path: "/api/movies/" + unknown + "/", contentType: ctJSON, body: valid, wantStatus: 404, wantCode: "not_found"},
		{name: "delete unknown id", method: "DELETE", path: "/api/movies/" + unknown, wantStatus: 404, wantCode: "not_found"},
		{name: "delete unknown id trailing slash", method: "DELETE", path: "/api/movies/" + unknown + "/", wantStatus: 404, wantCode: "not_found"},

		// Malformed JSON.
		{name: "post empty body", method: "POST", path: "/api/movies", contentType: ctJSON, body: "", wantStatus: 400, wantCode: "invalid_json"},
		{name: "post blank body", method: "POST", path: "/api/movies", contentType: ctJSON, body: " \n\t ", wantStatus: 400, wantCode: "invalid_json"},
		{name: "post truncated object", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":"x"`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "post syntax error", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":x}`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "post single quotes", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{'title':'x'}`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "post trailing comma", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":"x",}`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "post JSON array", method: "POST", path: "/api/movies", contentType: ctJSON, body: `[{"title":"x"}]`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "post JSON string", method: "POST", path: "/api/movies", contentType: ctJSON, body: `"x"`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "post JSON null", method: "POST", path: "/api/movies", contentType: ctJSON, body: `null`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "post two objects", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":"x"} {"title":"y"}`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "post trailing garbage", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":"x"} garbage`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "post trailing brace", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":"x"}}`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "post trailing bracket", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":"x"}]`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "put malformed", method: "PUT", path: "/api/movies/" + id, contentType: ctJSON, body: `{"title":`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "put trailing data", method: "PUT", path: "/api/movies/" + id, contentType: ctJSON, body: `{"title":"x"}}`, wantStatus: 400, wantCode: "invalid_json"},

		// Raw invalid UTF-8 makes the body invalid JSON (RFC 8259 section 8.1);
		// encoding/json would silently turn it into U+FFFD.
		{name: "post title with raw invalid UTF-8", method: "POST", path: "/api/movies", contentType: ctJSON, body: "{\"title\":\"a\xffb\"}", wantStatus: 400, wantCode: "invalid_json"},
		{name: "post description with raw invalid UTF-8", method: "POST", path: "/api/movies", contentType: ctJSON, body: "{\"title\":\"x\",\"description\":\"\xc3\x28\"}", wantStatus: 400, wantCode: "invalid_json"},
		{name: "put title with raw invalid UTF-8", method: "PUT", path: "/api/movies/" + id, contentType: ctJSON, body: "{\"title\":\"\xed\xa0\x80\"}", wantStatus: 400, wantCode: "invalid_json"},

		// Wrong JSON types: 400 naming the field.
		{name: "post title number", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":42}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "post title boolean", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":true}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "post title object", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":{"en":"x"}}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "post title array", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":["x"]}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "post title null", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":null}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "post description number", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":"x","description":1}`, wantStatus: 400, wantCode: "validation_failed", wantField: "description"},
		{name: "post description object", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":"x","description":{}}`, wantStatus: 400, wantCode: "validation_failed", wantField: "description"},
		{name: "put title number", method: "PUT", path: "/api/movies/" + id, contentType: ctJSON, body: `{"title":1}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},

		// Failed rules: 400 naming the field.
		{name: "post empty object", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "post description only", method: "POST", path: "/api/movies/", contentType: ctJSON, body: `{"description":"d"}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "post empty title", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":""}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "post blank title", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":" \t\n "}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "post title 256 characters", method: "POST", path: "/api/movies", contentType: ctJSON, body: jsonBody(t, map[string]string{"title": strings.Repeat("a", 256)}), wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "post title 256 two-byte characters", method: "POST", path: "/api/movies", contentType: ctJSON, body: jsonBody(t, map[string]string{"title": strings.Repeat("é", 256)}), wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "post title with escaped NUL", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":"a\u0000b"}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "post title with line break", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":"a\nb"}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "post title with escape character", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":"a\u001bb"}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "post description 10001 characters", method: "POST", path: "/api/movies", contentType: ctJSON, body: jsonBody(t, map[string]string{"title": "x", "description": strings.Repeat("d", 10_001)}), wantStatus: 400, wantCode: "validation_failed", wantField: "description"},
		{name: "post description with escaped NUL", method: "POST", path: "/api/movies", contentType: ctJSON, body: `{"title":"x","description":"a\u0000"}`, wantStatus: 400, wantCode: "validation_failed", wantField: "description"},
		{name: "put empty title", method: "PUT", path: "/api/movies/" + id, contentType: ctJSON, body: `{"title":""}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "put missing title", method: "PUT", path: "/api/movies/" + id + "/", contentType: ctJSON, body: `{"description":"only"}`, wantStatus: 400, wantCode: "validation_failed", wantField: "title"},
		{name: "put description 10001 characters", method: "PUT", path: "/api/movies/" + id, contentType: ctJSON, body: jsonBody(t, map[string]string{"title": "x", "description": strings.Repeat("é", 10_001)}), wantStatus: 400, wantCode: "validation_failed", wantField: "description"},

		// Size.
		{name: "post body 1 MiB + 1", method: "POST", path: "/api/movies", contentType: ctJSON, body: tooLarge, wantStatus: 413, wantCode: "payload_too_large"},
		{name: "put body 1 MiB + 1", method: "PUT", path: "/api/movies/" + id, contentType: ctJSON, body: tooLarge, wantStatus: 413, wantCode: "payload_too_large"},

		// Media type.
		{name: "post text/plain", method: "POST", path: "/api/movies", contentType: "text/plain", body: valid, wantStatus: 415, wantCode: "unsupported_media_type"},
		{name: "post no content type", method: "POST", path: "/api/movies", body: valid, wantStatus: 415, wantCode: "unsupported_media_type"},
		{name: "post form", method: "POST", path: "/api/movies/", contentType: "application/x-www-form-urlencoded", body: "title=x", wantStatus: 415, wantCode: "unsupported_media_type"},
		{name: "post xml", method: "POST", path: "/api/movies", contentType: "application/xml", body: valid, wantStatus: 415, wantCode: "unsupported_media_type"},
		{name: "post malformed content type", method: "POST", path: "/api/movies", contentType: "application/json; charset", body: valid, wantStatus: 415, wantCode: "unsupported_media_type"},
		{name: "put text/plain", method: "PUT", path: "/api/movies/" + id, contentType: "text/plain", body: valid, wantStatus: 415, wantCode: "unsupported_media_type"},
		{name: "put no content type", method: "PUT", path: "/api/movies/" + id + "/", body: valid, wantStatus: 415, wantCode: "unsupported_media_type"},

		// Routing.
		{name: "patch collection", method: "PATCH", path: "/api/movies", contentType: ctJSON, body: valid, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "patch collection trailing slash", method: "PATCH", path: "/api/movies/", contentType: ctJSON, body: valid, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "patch item", method: "PATCH", path: "/api/movies/" + id, contentType: ctJSON, body: valid, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "patch item trailing slash", method: "PATCH", path: "/api/movies/" + id + "/", contentType: ctJSON, body: valid, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "put collection", method: "PUT", path: "/api/movies", contentType: ctJSON, body: valid, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "post item", method: "POST", path: "/api/movies/" + id, contentType: ctJSON, body: valid, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "unknown route", method: "GET", path: "/api/unknown", wantStatus: 404, wantCode: "not_found"},
		{name: "singular resource", method: "GET", path: "/api/movie", wantStatus: 404, wantCode: "not_found"},
		{name: "root", method: "GET", path: "/", wantStatus: 404, wantCode: "not_found"},
		{name: "nested under item", method: "GET", path: "/api/movies/" + id + "/cast", wantStatus: 404, wantCode: "not_found"},
		{name: "empty id", method: "GET", path: "/api/movies//", wantStatus: 400, wantCode: "invalid_id"},
		{name: "upper-case path", method: "GET", path: "/API/MOVIES", wantStatus: 404, wantCode: "not_found"},
		{name: "delete unknown route", method: "DELETE", path: "/api", wantStatus: 404, wantCode: "not_found"},
	}

	// Successful reads run first, so that a bad request wrongly accepted
	// fails its own case and the final check, not every read.
	isRead := func(c tc) bool { return c.want != nil }
	phases := []struct {
		name string
		keep func(tc) bool
	}{
		{"reads", isRead},
		{"bad requests", func(c tc) bool { return !isRead(c) }},
	}
	for _, phase := range phases {
		t.Run(phase.name, func(t *testing.T) {
			for _, tc := range tests {
				if !phase.keep(tc) {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					var body []byte
					if tc.body != "" || tc.method == "POST" || tc.method == "PUT" {
						body = []byte(tc.body)
					}
					r := s.do(t, tc.method, tc.path, tc.contentType, body)
					checkEnvelope(t, r, tc.wantStatus, tc.wantCode, tc.wantField)
					if loc := r.header.Get("Location"); loc != "" {
						t.Errorf("unexpected Location header %q", loc)
					}
					switch want := tc.want.(type) {
					case nil:
					case movieJSON:
						if diff := cmp.Diff(want, decodeMovie(t, r.body)); diff != "" {
							t.Errorf("body mismatch (-want +got):\n%s", diff)
						}
					case []movieJSON:
						if diff := cmp.Diff(want, decodeList(t, r.body)); diff != "" {
							t.Errorf("body mismatch (-want +got):\n%s", diff)
						}
					default:
						t.Fatalf("test bug: want has type %T", tc.want)
					}
				})
			}
		})
	}

	// No bad request changed anything.
	if diff := cmp.Diff(seeded, s.list(t)); diff != "" {
		t.Errorf("data changed by bad requests (-want +got):\n%s", diff)
	}
}

// TestWrites covers the successful writes; every case works on its own movie.
func TestWrites(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	title255 := strings.Repeat("é", 255)
	exactlyOneMiB := padTo(`{"title":"exactly one MiB"}`, maxBody)

	type tc struct {
		name        string
		method      string // POST, PUT or DELETE
		slash       bool   // add a trailing slash to the path
		contentType string
		body        string
		wantStatus  int
		wantTitle   string
		wantDesc    string
	}
	tests := []tc{
		{name: "post", method: "POST", contentType: ctJSON, body: `{"title":"Alien","description":"In space."}`, wantStatus: 201, wantTitle: "Alien", wantDesc: "In space."},
		{name: "post trailing slash", method: "POST", slash: true, contentType: ctJSON, body: `{"title":"Alien","description":"In space."}`, wantStatus: 201, wantTitle: "Alien", wantDesc: "In space."},
		{name: "post charset utf-8", method: "POST", contentType: "application/json; charset=utf-8", body: `{"title":"Heat"}`, wantStatus: 201, wantTitle: "Heat"},
		{name: "post upper-case media type", method: "POST", contentType: "Application/JSON", body: `{"title":"Heat"}`, wantStatus: 201, wantTitle: "Heat"},
		{name: "post merge-patch+json", method: "POST", contentType: "application/merge-patch+json", body: `{"title":"Heat"}`, wantStatus: 201, wantTitle: "Heat"},
		{name: "post description absent", method: "POST", contentType: ctJSON, body: `{"title":"No description"}`, wantStatus: 201, wantTitle: "No description"},
		{name: "post description null", method: "POST", contentType: ctJSON, body: `{"title":"Null description","description":null}`, wantStatus: 201, wantTitle: "Null description"},
		{name: "post title trimmed", method: "POST", contentType: ctJSON, body: `{"title":"  \t Padded \n "}`, wantStatus: 201, wantTitle: "Padded"},
		{name: "post unknown fields and id ignored", method: "POST", contentType: ctJSON, body: `{"id":999999,"title":"Ignored extras","year":1979}`, wantStatus: 201, wantTitle: "Ignored extras"},
		{name: "post 255 two-byte characters", method: "POST", contentType: ctJSON, body: jsonBody(t, map[string]string{"title": title255}), wantStatus: 201, wantTitle: title255},
		{name: "post description 10000 characters", method: "POST", contentType: ctJSON, body: jsonBody(t, map[string]string{"title": "Long", "description": strings.Repeat("é", 10_000)}), wantStatus: 201, wantTitle: "Long", wantDesc: strings.Repeat("é", 10_000)},
		{name: "post description with line breaks", method: "POST", contentType: ctJSON, body: `{"title":"Lines","description":"a\nb\tc"}`, wantStatus: 201, wantTitle: "Lines", wantDesc: "a\nb\tc"},
		{name: "post unicode escapes", method: "POST", contentType: ctJSON, body: `{"title":"Am\u00e9lie \ud83c\udfac"}`, wantStatus: 201, wantTitle: "Amélie 🎬"},
		{name: "post body exactly 1 MiB", method: "POST", contentType: ctJSON, body: exactlyOneMiB, wantStatus: 201, wantTitle: "exactly one MiB"},
		{name: "put", method: "PUT", contentType: ctJSON, body: `{"title":"Aliens","description":"Again."}`, wantStatus: 200, wantTitle: "Aliens", wantDesc: "Again."},
		{name: "put trailing slash", method: "PUT", slash: true, contentType: ctJSON, body: `{"title":"Aliens","description":"Again."}`, wantStatus: 200, wantTitle: "Aliens", wantDesc: "Again."},
		{name: "put replaces description with empty when absent", method: "PUT", contentType: ctJSON, body: `{"title":"Replaced"}`, wantStatus: 200, wantTitle: "Replaced"},
		{name: "put merge-patch+json", method: "PUT", contentType: "application/merge-patch+json", body: `{"title":"Merged","description":"m"}`, wantStatus: 200, wantTitle: "Merged", wantDesc: "m"},
		{name: "put id in body ignored", method: "PUT", contentType: ctJSON, body: `{"id":1,"title":"Same id"}`, wantStatus: 200, wantTitle: "Same id"},
		{name: "delete", method: "DELETE", wantStatus: 200},
		{name: "delete trailing slash", method: "DELETE", slash: true, wantStatus: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := "/api/movies"
			var existing movieJSON
			if tc.method != "POST" {
				existing = seed(t, s.store, "Existing "+tc.name)[0]
				path += "/" + strconv.FormatInt(existing.ID, 10)
			}
			if tc.slash {
				path += "/"
			}
			var body []byte
			if tc.method != "DELETE" {
				body = []byte(tc.body)
			}
			r := s.do(t, tc.method, path, tc.contentType, body)
			checkEnvelope(t, r, tc.wantStatus, "", "")
			got := decodeMovie(t, r.body)

			switch tc.method {
			case "POST":
				if got.ID <= 0 {
					t.Errorf("created id = %d, want > 0", got.ID)
				}
				if want := "/api/movies/" + strconv.FormatInt(got.ID, 10); r.header.Get("Location") != want {
					t.Errorf("Location = %q, want %q", r.header.Get("Location"), want)
				}
			case "PUT":
				if got.ID != existing.ID {
					t.Errorf("updated id = %d, want %d", got.ID, existing.ID)
				}
			case "DELETE":
				if diff := cmp.Diff(existing, got); diff != "" {
					t.Errorf("DELETE must return the deleted movie (-want +got):\n%s", diff)
				}
				after := s.do(t, "GET", "/api/movies/"+strconv.FormatInt(existing.ID, 10), "", nil)
				checkEnvelope(t, after, 404, "not_found", "")
				return
			}
			want := movieJSON{ID: got.ID, Title: tc.wantTitle, Description: tc.wantDesc}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("response mismatch (-want +got):\n%s", diff)
			}
			// What was answered is what was stored.
			stored := s.do(t, "GET", "/api/movies/"+strconv.FormatInt(got.ID, 10), "", nil)
			checkEnvelope(t, stored, 200, "", "")
			if diff := cmp.Diff(want, decodeMovie(t, stored.body)); diff != "" {
				t.Errorf("stored movie mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCRUDFlow(t *testing.T) {
	t.Parallel()
	s := newServer(t)

	// Empty at start, as an array.
	r := s.do(t, "GET", "/api/movies", "", nil)
	checkEnvelope(t, r, 200, "", "")
	if got := strings.TrimSpace(string(r.body)); got != "[]" {
		t.Fatalf("empty list body = %s, want []", got)
	}

	// Create.
	r = s.do(t, "POST", "/api/movies", ctJSON, []byte(`{"title":"  Alien ","description":"In space."}`))
	checkEnvelope(t, r, 201, "", "")
	created := decodeMovie(t, r.body)
	loc := r.header.Get("Location")
	if want := fmt.Sprintf("/api/movies/%d", created.ID); loc != want {
		t.Fatalf("Location = %q, want %q", loc, want)
	}
	want := movieJSON{ID: created.ID, Title: "Alien", Description: "In space."}
	if diff := cmp.Diff(want, created); diff != "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}

	// The Location can be fetched as is.
	r = s.do(t, "GET", loc, "", nil)
	checkEnvelope(t, r, 200, "", "")
	if diff := cmp.Diff(want, decodeMovie(t, r.body)); diff != "" {
		t.Errorf("GET Location (-want +got):\n%s", diff)
	}

	// A second movie; the list is ordered by id.
	r = s.do(t, "POST", "/api/movies/", ctJSON, []byte(`{"title":"Brazil"}`))
	checkEnvelope(t, r, 201, "", "")
	second := decodeMovie(t, r.body)
	if second.ID <= created.ID {
		t.Errorf("second id %d not after first %d", second.ID, created.ID)
	}
	if diff := cmp.Diff([]movieJSON{want, second}, s.list(t)); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}

	// Replace.
	r = s.do(t, "PUT", loc, ctJSON, []byte(`{"title":"Aliens"}`))
	checkEnvelope(t, r, 200, "", "")
	want = movieJSON{ID: created.ID, Title: "Aliens", Description: ""}
	if diff := cmp.Diff(want, decodeMovie(t, r.body)); diff != "" {
		t.Errorf("PUT (-want +got):\n%s", diff)
	}
	r = s.do(t, "GET", loc+"/", "", nil)
	checkEnvelope(t, r, 200, "", "")
	if diff := cmp.Diff(want, decodeMovie(t, r.body)); diff != "" {
		t.Errorf("GET after PUT (-want +got):\n%s", diff)
	}

	// Search.
	r = s.do(t, "GET", "/api/movies?title=LIEN", "", nil)
	checkEnvelope(t, r, 200, "", "")
	if diff := cmp.Diff([]movieJSON{want}, decodeList(t, r.body)); diff != "" {
		t.Errorf("search (-want +got):\n%s", diff)
	}

	// Delete returns the deleted movie; then it is gone.
	r = s.do(t, "DELETE", loc, "", nil)
	checkEnvelope(t, r, 200, "", "")
	if diff := cmp.Diff(want, decodeMovie(t, r.body)); diff != "" {
		t.Errorf("DELETE (-want +got):\n%s", diff)
	}
	for _, step := range []struct{ method, path, ct, body string }{
		{"GET", loc, "", ""},
		{"PUT", loc, ctJSON, `{"title":"x"}`},
		{"DELETE", loc, "", ""},
	} {
		var body []byte
		if step.body != "" {
			body = []byte(step.body)
		}
		r = s.do(t, step.method, step.path, step.ct, body)
		checkEnvelope(t, r, 404, "not_found", "")
		if !bytes.Contains(r.body, []byte(strconv.FormatInt(created.ID, 10))) {
			t.Errorf("%s after delete: message %s does not name id %d", step.method, r.body, created.ID)
		}
	}
	if diff := cmp.Diff([]movieJSON{second}, s.list(t)); diff != "" {
		t.Errorf("list after delete (-want +got):\n%s", diff)
	}
}

func TestDeleteAll(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tests := []struct {
		name  string
		path  string
		seeds int
	}{
		{"empty", "/api/movies", 0},
		{"three", "/api/movies", 3},
		{"trailing slash", "/api/movies/", 2},
	}
	// Sequential: each step empties the table.
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.seeds {
				seed(t, s.store, fmt.Sprintf("%s %d", tc.name, i))
			}
			r := s.do(t, "DELETE", tc.path, "", nil)
			checkEnvelope(t, r, 200, "", "")
			var got map[string]int64
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatalf("decode %s: %v", r.body, err)
			}
			if diff := cmp.Diff(map[string]int64{"deleted": int64(tc.seeds)}, got); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if list := s.list(t); len(list) != 0 {
				t.Errorf("list after delete all = %v, want empty", list)
			}
		})
	}
}

// TestConcurrentCreates: 200 creates from 16 goroutines all get distinct ids
// and are all stored.
func TestConcurrentCreates(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	const (
		total   = 200
		workers = 16
	)
	type result struct {
		status   int
		id       int64
		location string
		err      string
	}
	results := make([]result, total)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				body := fmt.Sprintf(`{"title":"concurrent %d"}`, i)
				req, err := http.NewRequestWithContext(testContext(t), "POST", s.srv.URL+"/api/movies", strings.NewReader(body))
				if err != nil {
					results[i].err = err.Error()
					continue
				}
				req.Header.Set("Content-Type", ctJSON)
				resp, err := s.client.Do(req)
				if err != nil {
					results[i].err = err.Error()
					continue
				}
				var m movieJSON
				decErr := json.NewDecoder(resp.Body).Decode(&m)
				resp.Body.Close()
				results[i] = result{status: resp.StatusCode, id: m.ID, location: resp.Header.Get("Location")}
				if decErr != nil {
					results[i].err = decErr.Error()
				}
			}
		})
	}
	for i := range total {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	seen := make(map[int64]int, total)
	for i, r := range results {
		if r.err != "" || r.status != http.StatusCreated {
			t.Errorf("create %d: status %d, err %q", i, r.status, r.err)
			continue
		}
		if prev, dup := seen[r.id]; dup {
			t.Errorf("creates %d and %d both got id %d", prev, i, r.id)
		}
		seen[r.id] = i
		if want := fmt.Sprintf("/api/movies/%d", r.id); r.location != want {
			t.Errorf("create %d: Location %q, want %q", i, r.location, want)
		}
	}
	if len(seen) != total {
		t.Errorf("%d distinct ids, want %d", len(seen), total)
	}

	list := s.list(t)
	if len(list) != total {
		t.Fatalf("list has %d movies, want %d", len(list), total)
	}
	for j, m := range list {
		i, ok := seen[m.ID]
		if !ok {
			t.Errorf("listed id %d was not returned by any create", m.ID)
			continue
		}
		if want := fmt.Sprintf("concurrent %d", i); m.Title != want {
			t.Errorf("movie %d title %q, want %q", m.ID, m.Title, want)
		}
		if j > 0 && list[j-1].ID >= m.ID {
			t.Errorf("list not ordered by id at %d: %d then %d", j, list[j-1].ID, m.ID)
		}
	}
}

// TestDatabaseDown: with the database unreachable, every data route answers
// 503 in the one error shape, and the cause is logged, not sent.
func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	db, err := pgdb.Open(pgtest.UnreachableConfig(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = pgdb.Close(db) })
	s := serve(t, moviedb.New(db))

	valid := `{"title":"x"}`
	tests := []struct {
		name, method, path, contentType, body string
		wantStatus                            int
		wantCode, wantField                   string
	}{
		{"list", "GET", "/api/movies", "", "", 503, "service_unavailable", ""},
		{"search", "GET", "/api/movies?title=x", "", "", 503, "service_unavailable", ""},
		{"get", "GET", "/api/movies/1", "", "", 503, "service_unavailable", ""},
		{"create", "POST", "/api/movies", ctJSON, valid, 503, "service_unavailable", ""},
		{"update", "PUT", "/api/movies/1", ctJSON, valid, 503, "service_unavailable", ""},
		{"delete", "DELETE", "/api/movies/1", "", "", 503, "service_unavailable", ""},
		{"delete all", "DELETE", "/api/movies", "", "", 503, "service_unavailable", ""},
		// Input errors are found before the database is asked.
		{"invalid id", "GET", "/api/movies/abc", "", "", 400, "invalid_id", ""},
		{"invalid body", "POST", "/api/movies", ctJSON, `{}`, 400, "validation_failed", "title"},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				var body []byte
				if tc.body != "" {
					body = []byte(tc.body)
				}
				r := s.do(t, tc.method, tc.path, tc.contentType, body)
				checkEnvelope(t, r, tc.wantStatus, tc.wantCode, tc.wantField)
			})
		}
	})
	// Close waits for every handler, so each failure has been logged.
	s.srv.Close()
	logs := s.log.String()
	for _, want := range []string{"status=503", "movie storage unavailable", "moviedb: list"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// TestInternalErrorHidden: a database error that is neither an outage nor
// the client's fault (here the table is gone) is a 500 "internal error";
// the cause goes to the log only.
func TestInternalErrorHidden(t *testing.T) {
	t.Parallel()
	s, db := newServerDB(t)
	m := seed(t, s.store, "Alien")[0]
	if err := db.WithContext(testContext(t)).Exec("DROP TABLE movies").Error; err != nil {
		t.Fatalf("drop table: %v", err)
	}
	id := strconv.FormatInt(m.ID, 10)
	tests := []struct {
		name, method, path, contentType, body string
	}{
		{"list", "GET", "/api/movies", "", ""},
		{"search", "GET", "/api/movies?title=a", "", ""},
		{"get", "GET", "/api/movies/" + id, "", ""},
		{"create", "POST", "/api/movies", ctJSON, `{"title":"x"}`},
		{"update", "PUT", "/api/movies/" + id, ctJSON, `{"title":"x"}`},
		{"delete", "DELETE", "/api/movies/" + id, "", ""},
		{"delete all", "DELETE", "/api/movies", "", ""},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				var body []byte
				if tc.body != "" {
					body = []byte(tc.body)
				}
				r := s.do(t, tc.method, tc.path, tc.contentType, body)
				checkEnvelope(t, r, 500, "internal_error", "")
				var e errorJSON
				if err := json.Unmarshal(r.body, &e); err != nil {
					t.Fatalf("decode: %v", err)
				}
				if e.Error.Message != "internal error" {
					t.Errorf("message = %q, want the generic %q", e.Error.Message, "internal error")
				}
			})
		}
	})
	s.srv.Close() // waits for every handler, so each failure has been logged
	logs := s.log.String()
	for _, want := range []string{"level=ERROR", "status=500", `relation \"movies\" does not exist`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// BenchmarkGetMovie measures GET /api/movies/{id} through the full handler
// (middleware, routing, real store, JSON) on a real database.
func BenchmarkGetMovie(b *testing.B) {
	store := moviedb.New(pgtest.Open(b))
	ctx := testContext(b)
	if err := store.Migrate(ctx); err != nil {
		b.Fatalf("Migrate: %v", err)
	}
	m, err := store.Create(ctx, "Alien", strings.Repeat("In space no one can hear you scream. ", 10))
	if err != nil {
		b.Fatalf("Create: %v", err)
	}
	h, err := httpapi.New(store, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatalf("httpapi.New: %v", err)
	}
	req := httptest.NewRequestWithContext(ctx, "GET", fmt.Sprintf("/api/movies/%d", m.ID), nil)
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
