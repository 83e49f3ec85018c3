// Package testenv decides what a test does when a service it needs is not
// there: skip on a developer's laptop, fail in CI (CI=true), where .ci/run
// has made sure every service runs. A data-path test never passes by
// skipping in CI.
package testenv

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"moviestream/pkg/config"
)

// Load reads the repository's .env into the environment, failing the test
// if it cannot.
func Load(tb testing.TB) {
	tb.Helper()
	if err := config.Load(); err != nil {
		tb.Fatalf("load .env: %v", err)
	}
}

// InCI reports whether the test runs in CI.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable stops the test because a required service is missing.
func Unavailable(tb testing.TB, service string, err error) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("%s is required in CI but unavailable: %v", service, err)
	}
	tb.Skipf("%s unavailable (run make test-setup): %v", service, err)
}

// Get returns a required variable after Load, failing the test if unset.
func Get(tb testing.TB, key string) string {
	tb.Helper()
	v := os.Getenv(key)
	if v == "" {
		tb.Fatalf("%s is not set; is .env complete?", key)
	}
	return v
}

// WaitFor polls cond until it holds, failing the test after timeout, and
// returns how long the wait took. Tests wait for conditions, never for a
// fixed time.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// Response is a whole HTTP answer as a test reads it.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends a request through client (http.DefaultClient when nil) and
// returns the whole answer. header is added to the request as is; a
// transport error fails the test.
func Do(tb testing.TB, client *http.Client, method, url string, body io.Reader, header http.Header) Response {
	tb.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		tb.Fatalf("new request %s %s: %v", method, url, err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	r, err := Send(client, req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

// Send is Do for a request the caller built (with a context, say) where a
// transport error is an outcome, not a failure: it returns the error, and
// with a body that broke off, the status and header that did arrive.
func Send(client *http.Client, req *http.Request) (Response, error) {
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	r := Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	if err != nil {
		return r, fmt.Errorf("read body: %w", err)
	}
	return r, nil
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now: an
// address for a server the test starts, or one that must refuse connections.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
