//go:build topology

package topology

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"moviestream/pkg/testenv"
)

var client = &http.Client{Timeout: 20 * time.Second}

// do sends body (nil: none) as JSON, with the header pairs, through
// testenv.Do; a transport error fails the check.
func do(t *testing.T, method, url string, body any, header ...string) testenv.Response {
	t.Helper()
	h := http.Header{}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
		h.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return testenv.Do(t, client, method, url, rd, h)
}

// decode parses r's JSON body into v, failing the check if it is not JSON.
func decode(t *testing.T, r testenv.Response, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("reply %s is not JSON: %v", show(r), err)
	}
}

// show is r for a failure message: status and body.
func show(r testenv.Response) string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}
