package httpapi_test

import (
	"bytes"
	"compress/gzip"
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
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"moviestream/pkg/testenv"
	"moviestream/services/inventory/internal/httpapi"
	"moviestream/services/inventory/internal/movie"
	"moviestream/services/inventory/internal/moviedb/moviedbtest"
)

// allMovies reads every movie through the store, in id order.
func allMovies(t *testing.T, store movie.Store) []movieJSON {
	t.Helper()
	out := []movieJSON{}
	err := store.Each(testContext(t), movie.Filter{}, func(m movie.Movie) error {
		out = append(out, movieJSON{ID: m.ID, Title: m.Title, Description: m.Description})
		return nil
	})
	if err != nil {
		t.Fatalf("Each: %v", err)
	}
	return out
}

// TestListIsByteForByteTheSlice: the streamed list is exactly the bytes
// json.Marshal gives for the whole slice (what the handler wrote before it
// streamed): same escaping of HTML characters, line separators and quotes,
// no newlines, across many buffer flushes.
func TestListIsByteForByteTheSlice(t *testing.T) {
	t.Parallel()
	store, db := moviedbtest.Open(t)
	a := newAPI(t, store)
	for _, title := range []string{`<script>&"quoted"</script>`, "Amélie — 天使 🎬", "line\u2028sep\u2029para", `back\slash`} {
		seed(t, store, title)
	}
	if _, err := store.Create(testContext(t), "control", "tab\there\nnew line \x1b esc"); err != nil {
		t.Fatal(err)
	}
	moviedbtest.SeedSeries(t, db, "Bulk <&>", 2_000, 120) // about 300 KB: many 32 KiB writes

	want, err := json.Marshal(allMovies(t, store))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/movies", "/api/movies/"} {
		r := a.do(t, "GET", path, "", "")
		check(t, r, 200, "", "")
		if !bytes.Equal(r.Body, want) {
			t.Errorf("GET %s: %d bytes differ from json.Marshal of the slice (%d bytes); first 200: %.200s", path, len(r.Body), len(want), r.Body)
		}
	}
	// A search streams the same way.
	r := a.do(t, "GET", "/api/movies?title=%3Cscript", "", "")
	check(t, r, 200, "", "")
	if got := decode[[]movieJSON](t, r); len(got) != 1 || got[0].Title != `<script>&"quoted"</script>` {
		t.Errorf("search = %+v", got)
	}
}

// linkRE is the one Link form the API sends.
var linkRE = regexp.MustCompile(`^<(/api/movies\?[^>]*)>; rel="next"$`)

// TestListPages: following Link rel="next" from ?limit=N walks the whole
// list once, in order, keeping the search term; the last page has no link
// (not even when it is exactly full), and no page is empty.
func TestListPages(t *testing.T) {
	t.Parallel()
	store, db := moviedbtest.Open(t)
	a := newAPI(t, store)
	moviedbtest.SeedSeries(t, db, "Movie 100%_&", 23, 10)
	moviedbtest.SeedSeries(t, db, "Other", 7, 10)
	all := allMovies(t, store)

	tests := []struct {
		name, first string
		want        []movieJSON
		pages       int
	}{
		{"pages of 5", "/api/movies?limit=5", all, 6},
		{"pages of 30, exactly full", "/api/movies/?limit=30", all, 1},
		{"one page of the max", "/api/movies?limit=1000", all, 1},
		{"search, kept in the link", "/api/movies?limit=10&title=" + url.QueryEscape("100%_&"), all[:23], 3},
		{"from an after_id", fmt.Sprintf("/api/movies?after_id=%d&limit=4", all[19].ID), all[20:], 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := []movieJSON{}
			path, pages := tc.first, 0
			for path != "" && pages <= len(all) {
				r := a.do(t, "GET", path, "", "")
				check(t, r, 200, "", "")
				page := decode[[]movieJSON](t, r)
				pages++
				if len(page) == 0 {
					t.Errorf("GET %s: empty page", path)
				}
				got = append(got, page...)
				path = ""
				if link := r.Header.Get("Link"); link != "" {
					m := linkRE.FindStringSubmatch(link)
					if m == nil {
						t.Fatalf("GET %s: Link %q is not <path-absolute URL>; rel=\"next\"", path, link)
					}
					path = m[1]
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("pages from %s (-want +got):\n%s", tc.first, diff)
			}
			if pages != tc.pages {
				t.Errorf("%d pages, want %d", pages, tc.pages)
			}
		})
	}

	// The link's exact form: limit, after_id of the page's last movie, then
	// the search term, query-escaped.
	r := a.do(t, "GET", "/api/movies?title="+url.QueryEscape("100%_&")+"&limit=2", "", "")
	want := fmt.Sprintf(`</api/movies?limit=2&after_id=%d&title=100%%25_%%26>; rel="next"`, all[1].ID)
	if got := r.Header.Get("Link"); got != want {
		t.Errorf("Link = %q, want %q", got, want)
	}
	// Without limit, the full list and no link, whatever after_id says.
	r = a.do(t, "GET", fmt.Sprintf("/api/movies?after_id=%d", all[27].ID), "", "")
	if diff := cmp.Diff(all[28:], decode[[]movieJSON](t, r)); diff != "" || r.Header.Get("Link") != "" {
		t.Errorf("after_id alone: Link %q, (-want +got):\n%s", r.Header.Get("Link"), diff)
	}
}

// TestListParamErrors: a limit or after_id that is not a number in range is
// refused with the field named, before the store is asked.
func TestListParamErrors(t *testing.T) {
	t.Parallel()
	a := newAPI(t, failingStore{err: errors.New("the store must not be asked")})
	for _, tc := range []struct{ query, field string }{
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=-1", "limit"},
		{"limit=+5", "limit"},
		{"limit=abc", "limit"},
		{"limit=", "limit"},
		{"limit=1.5", "limit"},
		{"limit=99999999999999999999", "limit"},
		{"limit=10&after_id=-1", "after_id"},
		{"after_id=abc", "after_id"},
		{"after_id=", "after_id"},
		{"after_id=9223372036854775808", "after_id"},
		{"limit=5&title=%FF", "title"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			t.Parallel()
			r := a.do(t, "GET", "/api/movies?"+tc.query, "", "")
			check(t, r, 400, "validation_failed", tc.field)
			if r.Header.Get("Link") != "" {
				t.Errorf("Link on an error: %q", r.Header.Get("Link"))
			}
		})
	}
}

// midStreamStore lists n movies, then fails as a database that went away.
type midStreamStore struct {
	failingStore
	n int
}

func (s midStreamStore) Each(_ context.Context, _ movie.Filter, fn func(movie.Movie) error) error {
	for i := 1; i <= s.n; i++ {
		if err := fn(movie.Movie{ID: int64(i), Title: fmt.Sprintf("Movie %d", i), Description: strings.Repeat("d", 100)}); err != nil {
			return err
		}
	}
	return s.err
}

// TestListFailsMidStream: when the store fails after the answer started,
// the client gets a broken response, never a valid-looking short list, and
// the cause is logged once; before anything was sent it is an ordinary
// error answer.
func TestListFailsMidStream(t *testing.T) {
	t.Parallel()
	cause := fmt.Errorf("moviedb: list: %w: connection reset by peer", movie.ErrUnavailable)
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			t.Parallel()
			a := newAPI(t, midStreamStore{failingStore: failingStore{err: cause}, n: 2_000}) // ~250 KB
			req, err := http.NewRequest("GET", a.srv.URL+"/api/movies", nil)
			if err != nil {
				t.Fatal(err)
			}
			if gz {
				req.Header.Set("Accept-Encoding", "gzip")
			}
			resp, err := a.client.Do(req)
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d, want 200 (sent before the failure)", resp.StatusCode)
			}
			var body io.Reader = resp.Body
			if gz {
				zr, err := gzip.NewReader(resp.Body)
				if err != nil {
					t.Fatalf("gzip: %v", err)
				}
				body = zr
			}
			got, err := io.ReadAll(body)
			if err == nil {
				t.Errorf("the body (%d bytes) ended cleanly; want a cut connection", len(got))
			}
			if json.Valid(got) {
				t.Errorf("the cut body is valid JSON (%d bytes)", len(got))
			}
			a.srv.Close() // every handler has logged
			if n := a.log.Count("connection reset by peer"); n != 1 {
				t.Errorf("cause logged %d times, want once:\n%s", n, a.log)
			}
		})
	}
	t.Run("before the first byte", func(t *testing.T) {
		t.Parallel()
		a := newAPI(t, midStreamStore{failingStore: failingStore{err: cause}, n: 3})
		check(t, a.do(t, "GET", "/api/movies", "", ""), 503, "service_unavailable", "")
	})
}

// TestListStopsWhenClientLeaves: a client that hangs up mid-list stops the
// query in PostgreSQL, not only the handler.
func TestListStopsWhenClientLeaves(t *testing.T) {
	t.Parallel()
	store, db := moviedbtest.Open(t)
	a := newAPI(t, store)
	moviedbtest.SeedSeries(t, db, "Movie", 100_000, 200) // ~23 MB, far more than the sockets buffer

	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", a.srv.URL+"/api/movies", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<10)); err != nil {
		t.Fatalf("read the start: %v", err)
	}
	// Not reading on: the server fills the sockets and waits, query open.
	testenv.WaitFor(t, 10*time.Second, "the list query running", func() bool { return moviedbtest.RunningLists(t, db) == 1 })
	cancel()
	resp.Body.Close()
	testenv.WaitFor(t, 10*time.Second, "the list query to end after the client left", func() bool { return moviedbtest.RunningLists(t, db) == 0 })
}

// TestCompression: with Accept-Encoding: gzip, JSON answers of 4 KiB and
// more are gzipped (the streamed list included) and decompress to exactly
// the plain answer; small answers and errors are sent as they are; without
// the header nothing is compressed.
func TestCompression(t *testing.T) {
	t.Parallel()
	store, db := moviedbtest.Open(t)
	a := newAPI(t, store)
	moviedbtest.SeedSeries(t, db, "Movie", 500, 100) // ~65 KB
	small := seed(t, store, "Small")

	get := func(t *testing.T, path string, gz bool) testenv.Response {
		t.Helper()
		h := http.Header{}
		if gz {
			// Set by hand, so the client's transport does not decompress.
			h.Set("Accept-Encoding", "gzip")
		}
		return testenv.Do(t, a.client, "GET", a.srv.URL+path, nil, h)
	}
	plain := get(t, "/api/movies", false)
	if plain.Header.Get("Content-Encoding") != "" {
		t.Fatalf("compressed without Accept-Encoding: %v", plain.Header)
	}
	for _, path := range []string{"/api/movies", "/api/movies?limit=400"} {
		r := get(t, path, true)
		if r.Status != 200 || r.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("GET %s: status %d, Content-Encoding %q, want 200 gzip", path, r.Status, r.Header.Get("Content-Encoding"))
		}
		if !strings.Contains(r.Header.Get("Vary"), "Accept-Encoding") {
			t.Errorf("GET %s: Vary %q lacks Accept-Encoding", path, r.Header.Get("Vary"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(r.Body))
		if err != nil {
			t.Fatalf("GET %s: not gzip: %v", path, err)
		}
		body, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("GET %s: gunzip: %v", path, err)
		}
		if path == "/api/movies" && !bytes.Equal(body, plain.Body) {
			t.Errorf("gunzipped list (%d bytes) differs from the plain one (%d bytes)", len(body), len(plain.Body))
		}
		if len(r.Body)*3 > len(body) {
			t.Errorf("GET %s: %d bytes gzipped from %d, want at least 3x smaller", path, len(r.Body), len(body))
		}
	}
	for _, tc := range []struct {
		path   string
		status int
	}{
		{itemPath(small.ID), 200},
		{"/api/movies?title=small", 200},
		{"/api/movies/abc", 400},
		{"/api/movies?limit=0", 400},
		{itemPath(small.ID + 100_000), 404},
	} {
		r := get(t, tc.path, true)
		if r.Status != tc.status || r.Header.Get("Content-Encoding") != "" || !json.Valid(r.Body) {
			t.Errorf("GET %s: status %d, Content-Encoding %q, body %.100s; want %d, plain JSON", tc.path, r.Status, r.Header.Get("Content-Encoding"), r.Body, tc.status)
		}
	}
}

// discardWriter is a ResponseWriter that keeps nothing, so that a
// benchmark measures the handler, not a recorder's growing buffer.
type discardWriter struct {
	h http.Header
	n int64
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// BenchmarkListMovies streams GET /api/movies over 100,000 movies through
// the full handler (middleware, real store, JSON), plain and gzipped:
// rows per second, response bytes and heap allocated per row.
func BenchmarkListMovies(b *testing.B) {
	const rows = 100_000
	store, db := moviedbtest.Open(b)
	moviedbtest.SeedSeries(b, db, "Benchmark movie", rows, 40)
	h, err := httpapi.New(store, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatalf("httpapi.New: %v", err)
	}
	for _, enc := range []string{"identity", "gzip"} {
		b.Run(enc, func(b *testing.B) {
			var before, after runtime.MemStats
			var written int64
			runtime.ReadMemStats(&before)
			for b.Loop() {
				req, err := http.NewRequestWithContext(testContext(b), "GET", "/api/movies", nil)
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Accept-Encoding", enc)
				w := &discardWriter{h: http.Header{}}
				h.ServeHTTP(w, req)
				if w.n == 0 {
					b.Fatal("empty answer")
				}
				written += w.n
			}
			runtime.ReadMemStats(&after)
			total := float64(b.N) * rows
			b.ReportMetric(total/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(written)/total, "resp-B/row")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/total, "alloc-B/row")
		})
	}
}

// TestListOutlastsWriteTimeout: a client that keeps reading gets the whole
// list even when that takes longer than the server's WriteTimeout, which
// bounds each chunk instead; one that stops reading is still cut. Socket
// buffers are kept small on both sides so that the server blocks as soon
// as the client stops reading, whatever the machine's defaults.
func TestListOutlastsWriteTimeout(t *testing.T) {
	t.Parallel()
	const rows = 8_000 // ~2 MB
	store, db := moviedbtest.Open(t)
	moviedbtest.SeedSeries(t, db, "Movie", rows, 200)
	h, err := httpapi.New(store, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = smallBuffers{srv.Listener}
	srv.Config.WriteTimeout = 500 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{
		DisableCompression: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(smallBuffer)
			}
			return c, err
		},
	}}
	t.Cleanup(client.CloseIdleConnections)

	get := func(t *testing.T) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(testContext(t), "GET", srv.URL+"/api/movies", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	t.Run("slow but steady reader", func(t *testing.T) {
		resp := get(t)
		start := time.Now()
		var body bytes.Buffer
		buf := make([]byte, 64<<10)
		for {
			n, err := io.ReadFull(resp.Body, buf)
			body.Write(buf[:n])
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("read after %v and %d bytes: %v", time.Since(start), body.Len(), err)
				}
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		took := time.Since(start)
		var list []movieJSON
		if err := json.Unmarshal(body.Bytes(), &list); err != nil || len(list) != rows {
			t.Fatalf("after %v: %d bytes, %d movies, %v; want all %d", took, body.Len(), len(list), err, rows)
		}
		if took < srv.Config.WriteTimeout {
			t.Errorf("read in %v: the test did not outlast the WriteTimeout", took)
		}
	})
	t.Run("reader that stops", func(t *testing.T) {
		resp := get(t)
		time.Sleep(5 * srv.Config.WriteTimeout)
		if got, err := io.ReadAll(resp.Body); err == nil {
			t.Errorf("a stalled client got the whole body (%d bytes)", len(got))
		}
	})
}

// smallBuffer is the socket buffer size TestListOutlastsWriteTimeout sets.
const smallBuffer = 64 << 10

// smallBuffers gives every accepted connection a small send buffer.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(smallBuffer)
	}
	return c, err
}
