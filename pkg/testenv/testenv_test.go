package testenv_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"moviestream/pkg/testenv"
)

func TestDoReturnsTheWholeAnswer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header()["X-Echo"] = r.Header.Values("X-Multi")
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(body))
	}))
	t.Cleanup(srv.Close)

	r := testenv.Do(t, srv.Client(), http.MethodPut, srv.URL+"/a?b=c", strings.NewReader("payload"),
		http.Header{"X-Multi": {"one", "two"}})
	if r.Status != http.StatusTeapot || string(r.Body) != "PUT /a?b=c payload" {
		t.Errorf("answer = %d %q, want 418 %q", r.Status, r.Body, "PUT /a?b=c payload")
	}
	if got := r.Header.Values("X-Echo"); len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Errorf("header values sent = %q, want [one two]", got)
	}
}

func TestSendReportsTransportErrors(t *testing.T) {
	t.Parallel()
	refused, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)), nil)
	if _, err := testenv.Send(nil, refused); err == nil {
		t.Error("Send to a closed port: no error")
	}

	// A body that breaks off: the status that arrived, and an error.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "short")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	r, err := testenv.Send(srv.Client(), req)
	if err == nil || r.Status != http.StatusOK {
		t.Errorf("broken body: status %d, err %v; want 200 and an error", r.Status, err)
	}
}

func TestWaitForReturnsOnceTheConditionHolds(t *testing.T) {
	t.Parallel()
	start := time.Now()
	took := testenv.WaitFor(t, 5*time.Second, "50ms to pass", func() bool { return time.Since(start) >= 50*time.Millisecond })
	if took < 50*time.Millisecond || took > 2*time.Second {
		t.Errorf("WaitFor took %s, want just over 50ms", took)
	}
}
