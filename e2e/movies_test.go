//go:build e2e

package e2e

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

type movie struct {
	ID          int64  `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description"`
}

const jsonType = "application/json"

func TestMoviesCRUDThroughGateway(t *testing.T) {
	if r := do(t, http.MethodDelete, "/api/movies", "", nil); r.Status != http.StatusOK {
		t.Fatalf("DELETE /api/movies = %d %s", r.Status, r.Body)
	}

	r := do(t, http.MethodPost, "/api/movies", jsonType, []byte(`{"title":"  The Matrix ","description":"Neo"}`))
	if r.Status != http.StatusCreated {
		t.Fatalf("POST = %d %s", r.Status, r.Body)
	}
	var created movie
	r.json(t, &created)
	if created.ID <= 0 || created.Title != "The Matrix" || created.Description != "Neo" {
		t.Fatalf("created %+v", created)
	}
	if loc := r.Header.Get("Location"); loc != fmt.Sprintf("/api/movies/%d", created.ID) {
		t.Errorf("Location = %q", loc)
	}
	r = do(t, http.MethodPost, "/api/movies/", jsonType, []byte(`{"title":"100% Pure_Fun"}`))
	var second movie
	r.json(t, &second)
	if r.Status != http.StatusCreated || second.Description != "" {
		t.Fatalf("POST with trailing slash = %d %s", r.Status, r.Body)
	}

	var list []movie
	r = do(t, http.MethodGet, "/api/movies", "", nil)
	r.json(t, &list)
	if r.Status != http.StatusOK || len(list) != 2 || list[0].ID != created.ID || list[1].ID != second.ID {
		t.Fatalf("GET list = %d %+v", r.Status, list)
	}
	for query, want := range map[string]int{"matrix": 1, "MATRIX": 1, "%25": 1, "_": 1, "zzz": 0, "": 2} {
		r = do(t, http.MethodGet, "/api/movies/?title="+query, "", nil)
		var found []movie
		r.json(t, &found)
		if r.Status != http.StatusOK || len(found) != want {
			t.Errorf("search %q: %d results (status %d), want %d", query, len(found), r.Status, want)
		}
	}

	path := fmt.Sprintf("/api/movies/%d", created.ID)
	r = do(t, http.MethodPut, path+"/", jsonType, []byte(`{"title":"The Matrix Reloaded"}`))
	var updated movie
	r.json(t, &updated)
	if r.Status != http.StatusOK || updated.Title != "The Matrix Reloaded" || updated.Description != "" {
		t.Fatalf("PUT = %d %+v", r.Status, updated)
	}
	r = do(t, http.MethodGet, path, "", nil)
	var got movie
	r.json(t, &got)
	if r.Status != http.StatusOK || got != updated {
		t.Fatalf("GET after PUT = %d %+v", r.Status, got)
	}
	r = do(t, http.MethodDelete, path, "", nil)
	var deleted movie
	r.json(t, &deleted)
	if r.Status != http.StatusOK || deleted != updated {
		t.Fatalf("DELETE = %d %+v", r.Status, deleted)
	}
	if r = do(t, http.MethodGet, path, "", nil); r.Status != http.StatusNotFound || r.errCode() != "not_found" {
		t.Fatalf("GET after DELETE = %d %s", r.Status, r.Body)
	}
	r = do(t, http.MethodDelete, "/api/movies/", "", nil)
	if r.Status != http.StatusOK || strings.TrimSpace(string(r.Body)) != `{"deleted":1}` {
		t.Fatalf("DELETE all = %d %s", r.Status, r.Body)
	}
}

func TestMovieErrorsThroughGateway(t *testing.T) {
	do(t, http.MethodDelete, "/api/movies", "", nil)
	r := do(t, http.MethodPost, "/api/movies", jsonType, []byte(`{"title":"Keep me"}`))
	var keep movie
	r.json(t, &keep)

	big := append([]byte(`{"title":"`), make([]byte, 1<<20)...)
	tests := []struct {
		method, path, ctype string
		body                []byte
		status              int
		code                string
	}{
		{http.MethodGet, "/api/movies/abc", "", nil, 400, "invalid_id"},
		{http.MethodGet, "/api/movies/0", "", nil, 400, "invalid_id"},
		{http.MethodGet, "/api/movies/-1", "", nil, 400, "invalid_id"},
		{http.MethodGet, "/api/movies/99999999999999999999", "", nil, 400, "invalid_id"},
		{http.MethodGet, "/api/movies/987654321", "", nil, 404, "not_found"},
		{http.MethodPut, "/api/movies/987654321", jsonType, []byte(`{"title":"x"}`), 404, "not_found"},
		{http.MethodDelete, "/api/movies/987654321", "", nil, 404, "not_found"},
		{http.MethodPost, "/api/movies", jsonType, []byte(`{"title":`), 400, "invalid_json"},
		{http.MethodPost, "/api/movies", jsonType, []byte(`{"title":42}`), 400, "validation_failed"},
		{http.MethodPost, "/api/movies", jsonType, []byte(`{"title":"   "}`), 400, "validation_failed"},
		{http.MethodPost, "/api/movies", jsonType, []byte(`{"description":"no title"}`), 400, "validation_failed"},
		{http.MethodPost, "/api/movies", jsonType, []byte(`{"title":"` + strings.Repeat("x", 256) + `"}`), 400, "validation_failed"},
		{http.MethodPost, "/api/movies", "text/plain", []byte(`{"title":"x"}`), 415, "unsupported_media_type"},
		{http.MethodPut, fmt.Sprintf("/api/movies/%d", keep.ID), "", []byte(`{"title":"x"}`), 415, "unsupported_media_type"},
		{http.MethodPost, "/api/movies", jsonType, big, 413, "payload_too_large"},
		{http.MethodPatch, "/api/movies/1", jsonType, []byte(`{}`), 405, "method_not_allowed"},
		{http.MethodGet, "/api/movies/1/extra", "", nil, 404, "not_found"},
		{http.MethodGet, "/api/nothing", "", nil, 404, "not_found"},
	}
	for _, tt := range tests {
		r := do(t, tt.method, tt.path, tt.ctype, tt.body)
		if r.Status != tt.status || r.errCode() != tt.code {
			t.Errorf("%s %s: %d %q, want %d %q (%.200s)", tt.method, tt.path, r.Status, r.errCode(), tt.status, tt.code, r.Body)
		}
	}
	var list []movie
	do(t, http.MethodGet, "/api/movies", "", nil).json(t, &list)
	if len(list) != 1 || list[0] != keep {
		t.Fatalf("bad requests changed the data: %+v", list)
	}
}

// TestMoviePagesAndGzipThroughGateway: through the gateway, the Link
// rel="next" of ?limit=N pages walks the whole list, and a list answered
// gzipped by inventory reaches the client still gzipped (Content-Encoding
// intact, the same bytes once decompressed), while a small error does not
// get compressed.
func TestMoviePagesAndGzipThroughGateway(t *testing.T) {
	if r := do(t, http.MethodDelete, "/api/movies", "", nil); r.Status != http.StatusOK {
		t.Fatalf("DELETE /api/movies = %d %s", r.Status, r.Body)
	}
	t.Cleanup(func() { do(t, http.MethodDelete, "/api/movies", "", nil) })
	const n = 40
	desc := strings.Repeat("A long description, so that the list passes 4 KiB. ", 4)
	for i := range n {
		r := do(t, http.MethodPost, "/api/movies", jsonType, []byte(fmt.Sprintf(`{"title":"Page movie %d","description":%q}`, i, desc)))
		if r.Status != http.StatusCreated {
			t.Fatalf("POST %d = %d %s", i, r.Status, r.Body)
		}
	}

	// identity: no compression; the client's transport would otherwise
	// ask for gzip itself and hide it.
	plain := do(t, http.MethodGet, "/api/movies", "", nil, "Accept-Encoding", "identity")
	var all []movie
	plain.json(t, &all)
	if plain.Status != http.StatusOK || len(all) != n || plain.Header.Get("Content-Encoding") != "" {
		t.Fatalf("GET plain = %d, %d movies, Content-Encoding %q", plain.Status, len(all), plain.Header.Get("Content-Encoding"))
	}

	gz := do(t, http.MethodGet, "/api/movies", "", nil, "Accept-Encoding", "gzip")
	if gz.Status != http.StatusOK || gz.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("GET with Accept-Encoding: gzip = %d, Content-Encoding %q; want 200 gzip", gz.Status, gz.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz.Body))
	if err != nil {
		t.Fatalf("body is not gzip: %v", err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	if !bytes.Equal(body, plain.Body) {
		t.Errorf("gunzipped list (%d bytes) differs from the plain one (%d bytes)", len(body), len(plain.Body))
	}
	if len(gz.Body) >= len(plain.Body)/3 {
		t.Errorf("gzipped list is %d bytes for %d plain", len(gz.Body), len(plain.Body))
	}
	if r := do(t, http.MethodGet, "/api/movies/abc", "", nil, "Accept-Encoding", "gzip"); r.Status != http.StatusBadRequest || r.Header.Get("Content-Encoding") != "" || r.errCode() != "invalid_id" {
		t.Errorf("small error = %d, Content-Encoding %q, %s; want 400 uncompressed", r.Status, r.Header.Get("Content-Encoding"), r.Body)
	}

	var paged []movie
	path, pages := "/api/movies?limit=7", 0
	for path != "" && pages < n {
		r := do(t, http.MethodGet, path, "", nil)
		var page []movie
		r.json(t, &page)
		if r.Status != http.StatusOK || len(page) == 0 {
			t.Fatalf("GET %s = %d, %d movies", path, r.Status, len(page))
		}
		paged = append(paged, page...)
		pages++
		path = ""
		if link := r.Header.Get("Link"); link != "" {
			target, ok := strings.CutSuffix(link, `>; rel="next"`)
			if !ok || !strings.HasPrefix(target, "</api/movies?") {
				t.Fatalf("Link %q is not </api/movies?...>; rel=\"next\"", link)
			}
			path = strings.TrimPrefix(target, "<")
		}
	}
	if pages != 6 || len(paged) != n {
		t.Fatalf("%d pages, %d movies; want 6 pages of the %d", pages, len(paged), n)
	}
	for i := range all {
		if paged[i] != all[i] {
			t.Fatalf("page walk differs at %d: %+v, want %+v", i, paged[i], all[i])
		}
	}
	if r := do(t, http.MethodGet, "/api/movies?limit=0", "", nil); r.Status != http.StatusBadRequest || r.errCode() != "validation_failed" {
		t.Errorf("limit=0 = %d %s, want 400 validation_failed", r.Status, r.Body)
	}
}

func TestHealth(t *testing.T) {
	if r := do(t, http.MethodGet, "/health", "", nil); r.Status != http.StatusOK {
		t.Fatalf("/health = %d", r.Status)
	}
	if r := do(t, http.MethodGet, "/ready", "", nil); r.Status != http.StatusOK {
		t.Fatalf("/ready = %d %s", r.Status, r.Body)
	}
}
