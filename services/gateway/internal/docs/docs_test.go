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
	w := get(t, newHandler(t), docs.SpecPath, nil)
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), want) {
		t.Fatalf("GET %s = %d with %d bytes, want 200 and the root document", docs.SpecPath, w.Code, w.Body.Len())
	}
}

// newHandler routes the docs the way the gateway does, with the other
// adapters stubbed out.
func newHandler(t *testing.T) http.Handler {
	t.Helper()
	d, err := docs.New()
	if err != nil {
		t.Fatalf("docs.New: %v", err)
	}
	h, err := httpapi.New(httpapi.Deps{
		Movies:      http.NotFoundHandler(),
		PostBilling: func(*gin.Context) {},
		Broker:      func() broker.Status { return broker.Status{Connected: true} },
		Docs:        d,
	}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatalf("httpapi.New: %v", err)
	}
	return h
}

func get(t *testing.T, h http.Handler, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	return do(t, h, http.MethodGet, target, header)
}

func do(t *testing.T, h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestServesFiles(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
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
			w := get(t, h, tt.target, nil)
			if w.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200; body %.200s", w.Code, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", ct, tt.contentType)
			}
			if !strings.Contains(w.Body.String(), tt.contains) {
				t.Errorf("body does not contain %q", tt.contains)
			}
			if w.Header().Get("ETag") == "" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("headers = %v, want an ETag and nosniff", w.Header())
			}
			if w.Header().Get(web.RequestIDHeader) == "" {
				t.Errorf("no %s header", web.RequestIDHeader)
			}
			csp := w.Header().Get("Content-Security-Policy")
			if isHTML := strings.HasPrefix(tt.contentType, "text/html"); isHTML != strings.Contains(csp, "default-src 'self'") {
				t.Errorf("Content-Security-Policy = %q on %s", csp, tt.contentType)
			}
		})
	}
}

func TestRevalidationGets304(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
	first := get(t, h, "/docs/swagger-ui-bundle.js", nil)
	etag := first.Header().Get("ETag")
	if first.Code != http.StatusOK || etag == "" || first.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("first GET = %d, ETag %q, Cache-Control %q", first.Code, etag, first.Header().Get("Cache-Control"))
	}
	again := get(t, h, "/docs/swagger-ui-bundle.js", http.Header{"If-None-Match": {etag}})
	if again.Code != http.StatusNotModified || again.Body.Len() != 0 {
		t.Errorf("GET with If-None-Match = %d with %d bytes, want 304 and no body", again.Code, again.Body.Len())
	}
	if other := get(t, h, "/docs/swagger-ui.css", nil).Header().Get("ETag"); other == etag {
		t.Errorf("two different files share the ETag %s", etag)
	}
}

func TestErrorsAreJSON(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
	tests := []struct {
		method, target string
		status         int
		code           string
	}{
		{method: http.MethodGet, target: "/docs/nope.js", status: http.StatusNotFound, code: web.CodeNotFound},
		{method: http.MethodGet, target: "/docs/assets/index.html", status: http.StatusNotFound, code: web.CodeNotFound},
		{method: http.MethodGet, target: "/docs/../openapi.yaml", status: http.StatusNotFound, code: web.CodeNotFound},
		{method: http.MethodGet, target: "/openapi.yml", status: http.StatusNotFound, code: web.CodeNotFound},
		{method: http.MethodPost, target: "/docs", status: http.StatusMethodNotAllowed, code: web.CodeMethodNotAllowed},
		{method: http.MethodPut, target: "/openapi.yaml", status: http.StatusMethodNotAllowed, code: web.CodeMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			t.Parallel()
			w := do(t, h, tt.method, tt.target, nil)
			var got web.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q is not the JSON error shape: %v", w.Body, err)
			}
			if w.Code != tt.status || got.Error.Code != tt.code {
				t.Errorf("= %d %q, want %d %q", w.Code, got.Error.Code, tt.status, tt.code)
			}
		})
	}
}

// TestPageLoadsOnlyBundledFiles guards the offline promise: every script,
// style, icon and document the page and its initializer refer to is served
// by the gateway itself.
func TestPageLoadsOnlyBundledFiles(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
	page := get(t, h, "/docs", nil).Body.String() + get(t, h, "/docs/init.js", nil).Body.String()
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
		if w := get(t, h, ref, nil); w.Code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", ref, w.Code)
		}
	}
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Error("the page or its initializer names an absolute URL")
	}
	if !strings.Contains(page, "validatorUrl: null") {
		t.Error("Swagger UI's online validator is not disabled")
	}
}
