// Package docs serves the gateway's API description: the OpenAPI document at
// /openapi.yaml and Swagger UI for it at /docs. Every file is embedded in the
// binary, so the pages work on a machine with no internet access.
//
// The repository's root openapi.yaml is the canonical document. go:embed
// cannot reach outside this package, so openapi.yaml here is a copy made by
// `go generate`; a test fails when the two differ.
//
// assets/ holds index.html and init.js, written for this package, and the
// minimal files of the npm package swagger-ui-dist 5.35.0, unmodified:
// swagger-ui-bundle.js, swagger-ui.css, favicon-32x32.png and the license
// files (LICENSE, NOTICE, swagger-ui-bundle.js.LICENSE.txt). To update
// Swagger UI, copy the same files from the new version's tarball
// (`npm pack swagger-ui-dist@VERSION`) and change the version here.
package docs

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"time"

	"moviestream/pkg/errs"
	"moviestream/pkg/web"
)

//go:generate cp ../../../../openapi.yaml openapi.yaml

//go:embed openapi.yaml
var spec []byte

//go:embed assets
var assets embed.FS

// Paths the handler serves besides /docs/{file}.
const (
	SpecPath = "/openapi.yaml"
	UIPath   = "/docs"
)

// contentSecurityPolicy lets the page load nothing but the gateway's own
// files: no CDN, no fonts or validator from elsewhere. Swagger UI sets inline
// styles and shows data: images.
const contentSecurityPolicy = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; " +
	"object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

type file struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves /openapi.yaml, /docs, /docs/ and /docs/{file}; any other
// path gets the JSON 404. It is safe for concurrent use.
type Handler struct {
	files map[string]file // by URL path
}

// New returns the handler over the embedded files.
func New() (*Handler, error) {
	h := &Handler{files: map[string]file{
		SpecPath: newFile(spec, "application/yaml; charset=utf-8"),
	}}
	err := fs.WalkDir(assets, "assets", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := assets.ReadFile(name)
		if err != nil {
			return err
		}
		h.files[UIPath+"/"+path.Base(name)] = newFile(body, contentType(name))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("docs: read embedded assets: %w", err)
	}
	index, ok := h.files[UIPath+"/index.html"]
	if !ok {
		return nil, fmt.Errorf("docs: assets/index.html is not embedded")
	}
	h.files[UIPath] = index
	h.files[UIPath+"/"] = index
	return h, nil
}

// contentType is fixed here rather than taken from mime.TypeByExtension,
// which the host's MIME database can change.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return htmlType
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".png":
		return "image/png"
	default: // LICENSE, NOTICE, *.txt
		return "text/plain; charset=utf-8"
	}
}

const htmlType = "text/html; charset=utf-8"

func newFile(body []byte, contentType string) file {
	sum := sha256.Sum256(body)
	return file{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

// ServeHTTP answers with the file at the request's path. Files carry a
// content-hash ETag and must be revalidated, so a browser gets a cheap 304
// until the gateway is upgraded and then the new files at once.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := h.files[r.URL.Path]
	if !ok {
		web.WriteError(w, errs.New(errs.NotFound, "no route for %s %s", r.Method, r.URL.Path))
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", f.contentType)
	hdr.Set("ETag", f.etag)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Content-Type-Options", "nosniff")
	if f.contentType == htmlType {
		hdr.Set("Content-Security-Policy", contentSecurityPolicy)
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
