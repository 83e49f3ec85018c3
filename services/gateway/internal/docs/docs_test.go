package docs_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"moviestream/pkg/broker"
	"moviestream/pkg/errs"
	"moviestream/pkg/testenv"
	"moviestream/pkg/web"
	"moviestream/services/gateway/internal/docs"
	"moviestream/services/gateway/internal/httpapi"
)

// rootSpec is the canonical document at the repository's root.
const rootSpec = "../../../../openapi.yaml"

// TestSpecCopyMatchesRoot fails when the embedded copy has drifted from the
// root openapi.yaml, i.e. someone edited one without `go generate`.
func TestSpecCopyMatchesRoot(t *testing.T) {
	t.Parallel()
	want, err := os.ReadFile(rootSpec)
	if err != nil {
		t.Fatalf("read the canonical document: %v", err)
	}
	copied, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatalf("read the embedded copy: %v", err)
	}
	if !bytes.Equal(copied, want) {
		t.Fatalf("services/gateway/internal/docs/openapi.yaml differs from the root openapi.yaml; " +
			"run `go generate ./internal/docs` in services/gateway")
	}
	w := newServer(t).get(t, docs.SpecPath, nil)
	if w.Status != http.StatusOK || !bytes.Equal(w.Body, want) {
		t.Fatalf("GET %s = %d with %d bytes, want 200 and the root document", docs.SpecPath, w.Status, len(w.Body))
	}
}

// server routes the docs the way the gateway does, with the other adapters
// stubbed out, behind a client that reports redirects instead of following
// them and leaves compression alone.
type server struct {
	url    string
	client *http.Client
}

func newServer(t *testing.T) server {
	t.Helper()
	d, err := docs.New()
	if err != nil {
		t.Fatalf("docs.New: %v", err)
	}
	h, err := httpapi.New(httpapi.Deps{
		Movies:      http.NotFoundHandler(),
		PostBilling: func(*gin.Context) {},
		Ready:       broker.Status{Connected: true}.Readiness,
		Docs:        d,
	}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatalf("httpapi.New: %v", err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return server{url: srv.URL, client: &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (s server) do(t *testing.T, method, target string, header http.Header) testenv.Response {
	t.Helper()
	return testenv.Do(t, s.client, method, s.url+target, nil, header)
}

func (s server) get(t *testing.T, target string, header http.Header) testenv.Response {
	t.Helper()
	return s.do(t, http.MethodGet, target, header)
}

func TestServesFiles(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tests := []struct {
		target      string
		contentType string
		contains    string
	}{
		{target: "/openapi.yaml", contentType: "application/yaml; charset=utf-8", contains: "openapi: 3."},
		{target: "/docs", contentType: "text/html; charset=utf-8", contains: `<div id="swagger-ui">`},
		{target: "/docs/", contentType: "text/html; charset=utf-8", contains: `<div id="swagger-ui">`},
		{target: "/docs/index.html", contentType: "text/html; charset=utf-8", contains: `<div id="swagger-ui">`},
		{target: "/docs/init.js", contentType: "text/javascript; charset=utf-8", contains: `url: "/openapi.yaml"`},
		{target: "/docs/swagger-ui-bundle.js", contentType: "text/javascript; charset=utf-8", contains: "SwaggerUIBundle"},
		{target: "/docs/swagger-ui.css", contentType: "text/css; charset=utf-8", contains: ".swagger-ui"},
		{target: "/docs/favicon-32x32.png", contentType: "image/png", contains: "PNG"},
		{target: "/docs/LICENSE", contentType: "text/plain; charset=utf-8", contains: "Apache License"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			t.Parallel()
			w := s.get(t, tt.target, nil)
			if w.Status != http.StatusOK {
				t.Fatalf("status = %d, want 200; body %.200s", w.Status, w.Body)
			}
			if ct := w.Header.Get("Content-Type"); ct != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", ct, tt.contentType)
			}
			if !strings.Contains(string(w.Body), tt.contains) {
				t.Errorf("body does not contain %q", tt.contains)
			}
			if w.Header.Get("ETag") == "" || w.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("headers = %v, want an ETag and nosniff", w.Header)
			}
			if w.Header.Get(web.RequestIDHeader) == "" {
				t.Errorf("no %s header", web.RequestIDHeader)
			}
			csp := w.Header.Get("Content-Security-Policy")
			if isHTML := strings.HasPrefix(tt.contentType, "text/html"); isHTML != strings.Contains(csp, "default-src 'self'") {
				t.Errorf("Content-Security-Policy = %q on %s", csp, tt.contentType)
			}
		})
	}
}

func TestRevalidationGets304(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	first := s.get(t, "/docs/swagger-ui-bundle.js", nil)
	etag := first.Header.Get("ETag")
	if first.Status != http.StatusOK || etag == "" || first.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("first GET = %d, ETag %q, Cache-Control %q", first.Status, etag, first.Header.Get("Cache-Control"))
	}
	again := s.get(t, "/docs/swagger-ui-bundle.js", http.Header{"If-None-Match": {etag}})
	if again.Status != http.StatusNotModified || len(again.Body) != 0 {
		t.Errorf("GET with If-None-Match = %d with %d bytes, want 304 and no body", again.Status, len(again.Body))
	}
	if other := s.get(t, "/docs/swagger-ui.css", nil).Header.Get("ETag"); other == etag {
		t.Errorf("two different files share the ETag %s", etag)
	}
}

func TestErrorsAreJSON(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tests := []struct {
		method, target string
		status         int
		code           errs.Code
	}{
		{method: http.MethodGet, target: "/docs/nope.js", status: http.StatusNotFound, code: errs.NotFound},
		{method: http.MethodGet, target: "/docs/assets/index.html", status: http.StatusNotFound, code: errs.NotFound},
		{method: http.MethodGet, target: "/docs/../openapi.yaml", status: http.StatusNotFound, code: errs.NotFound},
		{method: http.MethodGet, target: "/openapi.yml", status: http.StatusNotFound, code: errs.NotFound},
		{method: http.MethodPost, target: "/docs", status: http.StatusMethodNotAllowed, code: errs.MethodNotAllowed},
		{method: http.MethodPut, target: "/openapi.yaml", status: http.StatusMethodNotAllowed, code: errs.MethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			t.Parallel()
			w := s.do(t, tt.method, tt.target, nil)
			var got web.ErrorBody
			if err := json.Unmarshal(w.Body, &got); err != nil {
				t.Fatalf("body %q is not the JSON error shape: %v", w.Body, err)
			}
			if w.Status != tt.status || got.Error.Code != tt.code {
				t.Errorf("= %d %q, want %d %q", w.Status, got.Error.Code, tt.status, tt.code)
			}
		})
	}
}

// TestPageLoadsOnlyBundledFiles guards the offline promise: every script,
// style, icon and document the page and its initializer refer to is served
// by the gateway itself.
func TestPageLoadsOnlyBundledFiles(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	page := string(s.get(t, "/docs", nil).Body) + string(s.get(t, "/docs/init.js", nil).Body)
	refs := regexp.MustCompile(`(?:src|href|url)\s*[=:]\s*"([^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 4 {
		t.Fatalf("found %d references in the page, want the stylesheet, icon, two scripts and the document", len(refs))
	}
	for _, m := range refs {
		ref := m[1]
		if !strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "//") {
			t.Errorf("%q is not a path on the gateway", ref)
			continue
		}
		if w := s.get(t, ref, nil); w.Status != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", ref, w.Status)
		}
	}
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Error("the page or its initializer names an absolute URL")
	}
	if !strings.Contains(page, "validatorUrl: null") {
		t.Error("Swagger UI's online validator is not disabled")
	}
}
