package billingapi_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPostedBodyIsWhatEncodingJSONWrites: the 200 answer is written by
// hand; for every character an Idempotency-Key may hold it must be
// exactly what encoding/json (gin's c.JSON) would write.
func TestPostedBodyIsWhatEncodingJSONWrites(t *testing.T) {
	t.Parallel()
	var all []byte
	for c := byte(0x21); c <= 0x7e; c++ {
		all = append(all, c)
	}
	for _, key := range []string{"order-42", `a"b\c`, "<script>&amp;", string(all)} {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			rec := post(t, newEngine(t, &fakePublisher{}, publishTimeout), request{body: validBody, key: key})
			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
			}
			want, err := json.Marshal(struct {
				Message   string `json:"message"`
				MessageID string `json:"message_id"`
			}{"Message posted", key})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), rec.Body.String()); diff != "" {
				t.Errorf("body (-encoding/json +handler):\n%s", diff)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}
