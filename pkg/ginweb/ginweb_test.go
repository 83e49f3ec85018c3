package ginweb_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"moviestream/pkg/errs"
	"moviestream/pkg/ginweb"
	"moviestream/pkg/web"
)

func TestEngineRoutingErrorsAreJSON(t *testing.T) {
	t.Parallel()
	e, err := ginweb.NewEngine(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.GET("/only-get", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	e.GET("/panics", func(*gin.Context) { panic("boom") })
	srv := httptest.NewServer(e)
	defer srv.Close()
	for path, want := range map[string]struct {
		method string
		code   errs.Code
		status int
	}{
		"/nope":     {http.MethodGet, errs.NotFound, http.StatusNotFound},
		"/only-get": {http.MethodPost, errs.MethodNotAllowed, http.StatusMethodNotAllowed},
		"/panics":   {http.MethodGet, errs.Internal, http.StatusInternalServerError},
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
