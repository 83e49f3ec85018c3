//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"moviestream/e2e/testinfra"
	"moviestream/pkg/testenv"
)

// The contract tests hold the gateway to the root openapi.yaml: every
// request below goes to a real gateway (the `make up` stack, with inventory,
// PostgreSQL and RabbitMQ behind it; or, for 502/503/504, a private gateway
// process built from this repository), and kin-openapi validates the
// request and the answer against the document. A request the test means to
// be invalid must also be invalid for the document, so the document and the
// code agree on what they refuse. At the end, every operation and every
// documented status must have been seen, except the few listed in
// notProducedHere.

// specServer is the documented server that requests are matched against;
// the tests send them to 127.0.0.1 on whichever port the gateway listens.
const specServer = "http://localhost:3000"

// notProducedHere lists documented answers no black-box test can provoke
// without breaking the shared stack: 500 is the last resort of every error
// mapping, and movies' 503 needs inventory's database down. Unit tests of
// inventory's and billing's error mappings cover them.
var notProducedHere = map[string]bool{
	"listMovies 500": true, "createMovie 500": true, "deleteAllMovies 500": true,
	"getMovie 500": true, "updateMovie 500": true, "deleteMovie 500": true, "postOrder 500": true,
	"listMovies 503": true, "createMovie 503": true, "deleteAllMovies 503": true,
	"getMovie 503": true, "updateMovie 503": true, "deleteMovie 503": true,
}

// contract is the loaded document and what the test has seen of it.
type contract struct {
	doc    *openapi3.T
	router routers.Router

	mu   sync.Mutex
	seen map[string]bool // "operationId status"
}

func loadContract(t *testing.T) *contract {
	t.Helper()
	// The document declares /docs as text/html; kin-openapi reads it as text.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)

	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(filepath.Join(repoRoot, "openapi.yaml"))
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("route openapi.yaml: %v", err)
	}
	return &contract{doc: doc, router: router, seen: map[string]bool{}}
}

// exchange is one request and the answer the test expects.
type exchange struct {
	method, path string
	contentType  string
	body         []byte
	header       http.Header
	// status and code (for errors) the gateway must answer with.
	status int
	code   string
	// invalid says the request breaks the document, so kin-openapi must
	// refuse it too.
	invalid bool
}

// check sends ex to the gateway at base, validates request and answer
// against the document, and returns the answer.
func (c *contract) check(t *testing.T, base string, ex exchange) response {
	t.Helper()
	name := fmt.Sprintf("%s %s (want %d %s)", ex.method, ex.path, ex.status, ex.code)
	r := send(t, base, ex.method, ex.path, ex.contentType, ex.body, ex.header)
	if r.Status != ex.status {
		t.Errorf("%s: status %d, want %d; body %.300s", name, r.Status, ex.status, r.Body)
	}
	if ex.code != "" && r.errCode() != ex.code {
		t.Errorf("%s: error code %q, want %q; body %.300s", name, r.errCode(), ex.code, r.Body)
	}

	// The same request as the document sees it: on the documented server,
	// and without a trailing slash, which every path accepts alike.
	req := c.specRequest(t, ex)
	route, params, err := c.router.FindRoute(req)
	switch {
	case errors.Is(err, routers.ErrMethodNotAllowed):
		c.checkUnrouted(t, name, r, http.StatusMethodNotAllowed, "MethodNotAllowed")
		return r
	case errors.Is(err, routers.ErrPathNotFound):
		c.checkUnrouted(t, name, r, http.StatusNotFound, "")
		return r
	case err != nil:
		t.Fatalf("%s: find route: %v", name, err)
	}

	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		// The API key is optional in the document (and in .env): the
		// gateway, not the document, decides; 401 answers are checked below.
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	switch {
	case ex.invalid && reqErr == nil:
		t.Errorf("%s: the gateway refuses this request (%d) but openapi.yaml accepts it", name, r.Status)
	case !ex.invalid && reqErr != nil:
		t.Errorf("%s: openapi.yaml refuses this request: %v", name, reqErr)
	}

	respErr := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 r.Status,
		Header:                 r.Header,
		Body:                   io.NopCloser(bytes.NewReader(r.Body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
	if respErr != nil {
		t.Errorf("%s: the answer %d does not match openapi.yaml: %v\nbody: %.300s", name, r.Status, respErr, r.Body)
	}
	c.mu.Lock()
	c.seen[fmt.Sprintf("%s %d", route.Operation.OperationID, r.Status)] = true
	c.mu.Unlock()
	return r
}

func (c *contract) specRequest(t *testing.T, ex exchange) *http.Request {
	t.Helper()
	path, query, _ := strings.Cut(ex.path, "?")
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	if query != "" {
		path += "?" + query
	}
	req, err := http.NewRequest(ex.method, specServer+path, bytes.NewReader(ex.body))
	if err != nil {
		t.Fatal(err)
	}
	if ex.contentType != "" {
		req.Header.Set("Content-Type", ex.contentType)
	}
	for k, v := range ex.header {
		req.Header[k] = v
	}
	return req
}

// checkUnrouted validates an answer to a request that matches no operation
// of the document: a documented path with another method (405, the
// MethodNotAllowed response), or no documented path at all (404).
func (c *contract) checkUnrouted(t *testing.T, name string, r response, status int, responseName string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: the document has no such operation, so the gateway must answer %d, not %d", name, status, r.Status)
		return
	}
	schema := c.doc.Components.Schemas["Error"].Value
	if responseName != "" {
		ref, ok := c.doc.Components.Responses[responseName]
		if !ok {
			t.Fatalf("openapi.yaml has no components/responses/%s", responseName)
		}
		schema = ref.Value.Content.Get("application/json").Schema.Value
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", name, ct)
	}
	if r.Header.Get("X-Request-ID") == "" {
		t.Errorf("%s: no X-Request-ID header", name)
	}
	var v any
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Errorf("%s: body is not JSON: %v", name, err)
		return
	}
	if err := schema.VisitJSON(v); err != nil {
		t.Errorf("%s: body does not match the document's error shape: %v", name, err)
	}
}

// checkCoverage fails for each operation, and each documented status of an
// operation, that no exchange produced.
func (c *contract) checkCoverage(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var missing []string
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				key := op.OperationID + " " + status
				if !c.seen[key] && !notProducedHere[key] {
					missing = append(missing, fmt.Sprintf("%s (%s %s)", key, method, path))
				}
			}
		}
	}
	slices.Sort(missing)
	for _, m := range missing {
		t.Errorf("documented answer never seen: %s", m)
	}
	for key := range notProducedHere {
		if c.seen[key] {
			t.Errorf("%s was produced: remove it from notProducedHere", key)
		}
	}
}

const billingOrder = `{"user_id":"3","number_of_items":"5","total_amount":"180"}`

func TestContract(t *testing.T) {
	c := loadContract(t)
	t.Run("stack", func(t *testing.T) { contractStack(t, c) })
	t.Run("faults", func(t *testing.T) { contractFaults(t, c) })
	if !t.Failed() {
		c.checkCoverage(t)
	}
}

// contractStack drives the gateway of the running stack through every
// operation, successes and client errors.
func contractStack(t *testing.T, c *contract) {
	const js = "application/json"
	check := func(ex exchange) response { t.Helper(); return c.check(t, gatewayURL, ex) }

	// Movies: from an empty catalogue through every operation.
	check(exchange{method: "DELETE", path: "/api/movies", status: 200})
	check(exchange{method: "GET", path: "/api/movies", status: 200})
	r := check(exchange{method: "POST", path: "/api/movies", contentType: js,
		body: []byte(`{"title":"The Matrix","description":"A hacker learns what the Matrix is."}`), status: 201})
	var created movie
	r.json(t, &created)
	item := fmt.Sprintf("/api/movies/%d", created.ID)
	check(exchange{method: "POST", path: "/api/movies/", contentType: "application/json; charset=utf-8",
		body: []byte(`{"title":"Alien","id":99}`), status: 201})
	check(exchange{method: "GET", path: "/api/movies/", status: 200})
	check(exchange{method: "GET", path: "/api/movies?title=matrix", status: 200})
	// Pages: two movies, one per page; the Link (whose form the document
	// checks) leads to the second page, which has none.
	r = check(exchange{method: "GET", path: "/api/movies?limit=1", status: 200})
	next := nextLink(t, r)
	if want := fmt.Sprintf("/api/movies?limit=1&after_id=%d", created.ID); next != want {
		t.Errorf("next page %q, want %q", next, want)
	}
	r = check(exchange{method: "GET", path: next, status: 200})
	if link := r.Header.Get("Link"); link != "" {
		t.Errorf("last page has a Link: %q", link)
	}
	r = check(exchange{method: "GET", path: "/api/movies/?limit=1&title=a", status: 200})
	if want := fmt.Sprintf("/api/movies?limit=1&after_id=%d&title=a", created.ID); nextLink(t, r) != want {
		t.Errorf("next page of a search %q, want %q", nextLink(t, r), want)
	}
	check(exchange{method: "GET", path: fmt.Sprintf("/api/movies?after_id=%d", created.ID), status: 200})
	check(exchange{method: "GET", path: "/api/movies?limit=1000&after_id=0&title=", status: 200})
	check(exchange{method: "GET", path: item, status: 200})
	check(exchange{method: "GET", path: item + "/", status: 200})
	check(exchange{method: "PUT", path: item, contentType: js, body: []byte(`{"title":"The Matrix Reloaded"}`), status: 200})
	check(exchange{method: "PUT", path: item + "/", contentType: js, body: []byte(`{"title":"The Matrix","description":""}`), status: 200})

	// Client errors of the movie operations.
	huge := []byte(`{"title":"x","pad":"` + strings.Repeat("x", 1<<20) + `"}`)
	for _, ex := range []exchange{
		{method: "GET", path: "/api/movies/abc", status: 400, code: "invalid_id", invalid: true},
		{method: "GET", path: "/api/movies/0", status: 400, code: "invalid_id", invalid: true},
		{method: "DELETE", path: "/api/movies/-1", status: 400, code: "invalid_id", invalid: true},
		{method: "PUT", path: "/api/movies/abc", contentType: js, body: []byte(`{"title":"x"}`), status: 400, code: "invalid_id", invalid: true},
		{method: "POST", path: "/api/movies", contentType: js, body: []byte(`{"title":`), status: 400, code: "invalid_json", invalid: true},
		{method: "POST", path: "/api/movies", contentType: js, body: []byte(`[]`), status: 400, code: "invalid_json", invalid: true},
		{method: "POST", path: "/api/movies", contentType: js, body: []byte(`{"title":42}`), status: 400, code: "validation_failed", invalid: true},
		{method: "POST", path: "/api/movies", contentType: js, body: []byte(`{"title":"   "}`), status: 400, code: "validation_failed", invalid: true},
		{method: "POST", path: "/api/movies", contentType: js, body: []byte(`{"description":"no title"}`), status: 400, code: "validation_failed", invalid: true},
		{method: "POST", path: "/api/movies", contentType: js, body: []byte(`{"title":"` + strings.Repeat("é", 256) + `"}`), status: 400, code: "validation_failed", invalid: true},
		{method: "PUT", path: item, contentType: js, body: []byte(`{"title":""}`), status: 400, code: "validation_failed", invalid: true},
		{method: "PUT", path: item, contentType: js, body: []byte(`{"title":"x","description":7}`), status: 400, code: "validation_failed", invalid: true},
		{method: "POST", path: "/api/movies", contentType: "text/plain", body: []byte(`{"title":"x"}`), status: 415, code: "unsupported_media_type", invalid: true},
		{method: "PUT", path: item, body: []byte(`{"title":"x"}`), status: 415, code: "unsupported_media_type", invalid: true},
		// The size limit is not a schema rule: the document accepts these.
		{method: "POST", path: "/api/movies", contentType: js, body: huge, status: 413, code: "payload_too_large"},
		{method: "PUT", path: item, contentType: js, body: huge, status: 413, code: "payload_too_large"},
		{method: "PATCH", path: item, contentType: js, body: []byte(`{"title":"x"}`), status: 405, code: "method_not_allowed"},
		{method: "PUT", path: "/api/movies", contentType: js, body: []byte(`{"title":"x"}`), status: 405, code: "method_not_allowed"},
		{method: "GET", path: "/api/movies?limit=0", status: 400, code: "validation_failed", invalid: true},
		{method: "GET", path: "/api/movies?limit=1001", status: 400, code: "validation_failed", invalid: true},
		{method: "GET", path: "/api/movies/?limit=ten", status: 400, code: "validation_failed", invalid: true},
		{method: "GET", path: "/api/movies?limit=5&after_id=-1", status: 400, code: "validation_failed", invalid: true},
		{method: "GET", path: "/api/movies?after_id=x", status: 400, code: "validation_failed", invalid: true},
		{method: "GET", path: item + "/extra", status: 404, code: "not_found"},
		{method: "GET", path: "/api/nothing", status: 404, code: "not_found"},
	} {
		check(ex)
	}

	// Delete, then the id is gone for every item operation.
	check(exchange{method: "DELETE", path: item, status: 200})
	check(exchange{method: "GET", path: item, status: 404, code: "not_found"})
	check(exchange{method: "PUT", path: item, contentType: js, body: []byte(`{"title":"x"}`), status: 404, code: "not_found"})
	check(exchange{method: "DELETE", path: item + "/", status: 404, code: "not_found"})
	check(exchange{method: "DELETE", path: "/api/movies/", status: 200})

	// Billing.
	key := "contract-" + time.Now().UTC().Format("20060102T150405.000000000")
	r = check(exchange{method: "POST", path: "/api/billing", contentType: js, body: []byte(billingOrder),
		header: headerOf("Idempotency-Key", key), status: 200})
	var posted struct {
		MessageID string `json:"message_id"`
	}
	r.json(t, &posted)
	if posted.MessageID != key {
		t.Errorf("message_id = %q, want the Idempotency-Key %q", posted.MessageID, key)
	}
	check(exchange{method: "POST", path: "/api/billing/", contentType: js,
		body: []byte(`{"user_id":3,"number_of_items":2,"total_amount":19.99}`), status: 200})
	for _, tc := range []struct {
		body, contentType, key string
		status                 int
		code                   string
		invalid                bool
	}{
		{body: `{"user_id":`, status: 400, code: "invalid_json", invalid: true},
		{body: `[]`, status: 400, code: "invalid_json", invalid: true},
		{body: `{"number_of_items":1,"total_amount":1}`, status: 400, code: "validation_failed", invalid: true},
		{body: `{"user_id":"","number_of_items":1,"total_amount":1}`, status: 400, code: "validation_failed", invalid: true},
		{body: `{"user_id":"3","number_of_items":"0","total_amount":"1"}`, status: 400, code: "validation_failed", invalid: true},
		{body: `{"user_id":"3","number_of_items":0,"total_amount":1}`, status: 400, code: "validation_failed", invalid: true},
		{body: `{"user_id":"3","number_of_items":1,"total_amount":-1}`, status: 400, code: "validation_failed", invalid: true},
		{body: `{"user_id":"3","number_of_items":1,"total_amount":"1.999"}`, status: 400, code: "validation_failed", invalid: true},
		{body: `{"user_id":"3","number_of_items":1,"total_amount":"12345678901"}`, status: 400, code: "validation_failed", invalid: true},
		{body: `{"user_id":true,"number_of_items":1,"total_amount":1}`, status: 400, code: "validation_failed", invalid: true},
		{body: billingOrder, key: "has space", status: 400, code: "invalid_header", invalid: true},
		{body: billingOrder, key: strings.Repeat("k", 256), status: 400, code: "invalid_header", invalid: true},
		{body: billingOrder, contentType: "text/plain", status: 415, code: "unsupported_media_type", invalid: true},
		{body: billingOrder, contentType: "-", status: 415, code: "unsupported_media_type", invalid: true},
		// The size limit is not a schema rule: the document accepts this.
		{body: `{"user_id":"3","number_of_items":"5","total_amount":"180","pad":"` + strings.Repeat("x", 70_000) + `"}`,
			status: 413, code: "payload_too_large"},
	} {
		ex := exchange{method: "POST", path: "/api/billing", contentType: tc.contentType, body: []byte(tc.body),
			status: tc.status, code: tc.code, invalid: tc.invalid}
		switch tc.contentType {
		case "":
			ex.contentType = js
		case "-": // no Content-Type at all
			ex.contentType = ""
		}
		if tc.key != "" {
			ex.header = headerOf("Idempotency-Key", tc.key)
		}
		check(ex)
	}
	check(exchange{method: "GET", path: "/api/billing", status: 405, code: "method_not_allowed"})
	check(exchange{method: "DELETE", path: "/api/billing/", status: 405, code: "method_not_allowed"})
	check(exchange{method: "POST", path: "/api/billing/1", contentType: js, body: []byte(billingOrder), status: 404, code: "not_found"})

	// Health and docs.
	check(exchange{method: "GET", path: "/health", status: 200})
	check(exchange{method: "POST", path: "/health", status: 405, code: "method_not_allowed"})
	check(exchange{method: "GET", path: "/ready", status: 200})
	for _, path := range []string{"/metadata", "/1.0/metadata"} {
		wantMetadata(t, check(exchange{method: "GET", path: path, status: 200}), "gateway", "none")
	}
	check(exchange{method: "POST", path: "/metadata", status: 405, code: "method_not_allowed"})
	r = check(exchange{method: "GET", path: "/openapi.yaml", status: 200})
	if root, err := os.ReadFile(filepath.Join(repoRoot, "openapi.yaml")); err != nil || !bytes.Equal(r.Body, root) {
		t.Errorf("GET /openapi.yaml is not the root openapi.yaml (%v): rebuild the gateway (make up)", err)
	}
	check(exchange{method: "GET", path: "/docs", status: 200})
	check(exchange{method: "GET", path: "/docs/", status: 200})
	check(exchange{method: "GET", path: "/docs/missing.js", status: 404, code: "not_found"})
}

// contractFaults runs a private gateway, built from this repository, in
// front of a fake inventory that hangs up or stalls and a RabbitMQ port
// where nothing listens, so that the gateway's own 502, 503 and 504 answers
// are checked without disturbing the shared stack.
func contractFaults(t *testing.T, c *contract) {
	const js = "application/json"
	inventory := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Fault") == "stall" {
			// Read the body first: only then does the server notice the
			// gateway hanging up and cancel r's context.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close() // hang up without an answer
		}
	}))
	t.Cleanup(inventory.Close)

	base := startPrivateGateway(t, map[string]string{
		"GATEWAY_INVENTORY_URL":    inventory.URL,
		"GATEWAY_UPSTREAM_TIMEOUT": "300ms",
		"GATEWAY_PUBLISH_TIMEOUT":  "300ms",
		"RABBITMQ_ADDRS":           fmt.Sprint("127.0.0.1:", testenv.FreePort(t)),
	})
	check := func(ex exchange) response { t.Helper(); return c.check(t, base, ex) }

	body := []byte(`{"title":"x"}`)
	movieOps := []exchange{
		{method: "GET", path: "/api/movies"},
		{method: "POST", path: "/api/movies", contentType: js, body: body},
		{method: "DELETE", path: "/api/movies"},
		{method: "GET", path: "/api/movies/1"},
		{method: "PUT", path: "/api/movies/1", contentType: js, body: body},
		{method: "DELETE", path: "/api/movies/1"},
	}
	for _, ex := range movieOps {
		ex.status, ex.code = http.StatusBadGateway, "bad_gateway"
		check(ex)
		ex.status, ex.code = http.StatusGatewayTimeout, "gateway_timeout"
		ex.header = headerOf("X-Fault", "stall")
		check(ex)
	}

	r := check(exchange{method: "GET", path: "/ready", status: http.StatusServiceUnavailable})
	var ready struct {
		RabbitMQ struct {
			Connected bool   `json:"connected"`
			Error     string `json:"error"`
		} `json:"rabbitmq"`
	}
	r.json(t, &ready)
	if ready.RabbitMQ.Connected || ready.RabbitMQ.Error == "" {
		t.Errorf("/ready = %s, want connected false with an error", r.Body)
	}
	check(exchange{method: "POST", path: "/api/billing", contentType: js, body: []byte(billingOrder),
		status: http.StatusServiceUnavailable, code: "service_unavailable"})
	check(exchange{method: "GET", path: "/health", status: http.StatusOK})

	// With GATEWAY_API_KEYS set, a write without the key is 401 and reaches
	// neither inventory nor the broker; reads stay open.
	keyed := startPrivateGateway(t, map[string]string{
		"GATEWAY_INVENTORY_URL": inventory.URL,
		"GATEWAY_API_KEYS":      "contract-test-key",
		"RABBITMQ_ADDRS":        fmt.Sprint("127.0.0.1:", testenv.FreePort(t)),
	})
	for _, ex := range []exchange{
		{method: "POST", path: "/api/movies", contentType: js, body: body},
		{method: "DELETE", path: "/api/movies"},
		{method: "PUT", path: "/api/movies/1", contentType: js, body: body},
		{method: "DELETE", path: "/api/movies/1"},
		{method: "POST", path: "/api/billing", contentType: js, body: []byte(billingOrder)},
	} {
		ex.status, ex.code = http.StatusUnauthorized, "unauthorized"
		c.check(t, keyed, ex)
	}
	c.check(t, keyed, exchange{method: "GET", path: "/api/movies/1", status: http.StatusBadGateway, code: "bad_gateway"})
	wantMetadata(t, c.check(t, keyed, exchange{method: "GET", path: "/metadata", status: http.StatusOK}), "gateway", "api-key")
}

// nextLink returns the path of an answer's Link rel="next", failing the
// test when there is none or it is not a path-absolute URL.
func nextLink(t *testing.T, r response) string {
	t.Helper()
	link := r.Header.Get("Link")
	target, ok := strings.CutSuffix(link, `>; rel="next"`)
	if !ok || !strings.HasPrefix(target, "</api/movies?") {
		t.Fatalf("Link %q, want </api/movies?...>; rel=\"next\"", link)
	}
	return strings.TrimPrefix(target, "<")
}

// wantMetadata checks a /metadata answer: every field a string, the
// service's name and auth, API version 1.0, and a version from the build.
func wantMetadata(t *testing.T, r response, name, auth string) {
	t.Helper()
	var m map[string]string // fails on a field that is not a string
	r.json(t, &m)
	if m["name"] != name || m["auth"] != auth || m["api_version"] != "1.0" {
		t.Errorf("metadata = %v, want name %q, auth %q, api_version 1.0", m, name, auth)
	}
	for _, k := range []string{"version", "description", "repository"} {
		if m[k] == "" {
			t.Errorf("metadata: %s is empty: %v", k, m)
		}
	}
}

// startPrivateGateway builds the gateway and runs it on a free port with the
// repository's configuration overridden by env; it is killed at cleanup.
func startPrivateGateway(t *testing.T, env map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := testinfra.BuildServices(repoRoot, dir, false, "gateway"); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	env["GATEWAY_PORT"] = strconv.Itoa(port)
	// Not the running stack's admin port.
	env["GATEWAY_ADMIN_ADDR"] = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	gw := testinfra.StartService(t, dir, "gateway", envFile, env)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	testenv.WaitFor(t, 30*time.Second, "the private gateway answering GET /health", func() bool {
		if !gw.Running() {
			t.Fatalf("the private gateway exited:\n%s", gw.LogTail(40))
		}
		resp, err := client.Get(base + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base
}
