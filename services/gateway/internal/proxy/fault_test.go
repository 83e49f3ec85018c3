package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"moviestream/pkg/errs"
)

// TestFault covers what a real connection only shows by chance: the
// transport can report the context cancelled by a client's half-close
// before the body read's own error reaches the wrapper.
func TestFault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      *body // nil = no body
		cancelled bool
		want      errs.Code // "" = not the client's fault
	}{
		{name: "no body", cancelled: true},
		{name: "body over the limit", body: &body{size: -1, n: 10, err: &http.MaxBytesError{Limit: 10}}, want: errs.TooLarge},
		{name: "body cut short", body: &body{size: 100, n: 10, err: io.ErrUnexpectedEOF}, want: errs.IncompleteBody},
		{name: "connection cancelled mid-body, read error not seen yet", body: &body{size: 100, n: 10}, cancelled: true, want: errs.IncompleteBody},
		{name: "body complete, client gone", body: &body{size: 100, n: 100, eof: true}, cancelled: true},
		{name: "body read to its length, client gone", body: &body{size: 100, n: 100}, cancelled: true},
		{name: "body not read yet, upstream down", body: &body{size: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.body != nil {
				ctx = context.WithValue(ctx, bodyKey{}, tt.body)
			}
			if tt.cancelled {
				cancel()
			}
			r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/api/movies", nil)
			got := fault(r)
			switch {
			case tt.want == "" && got != nil:
				t.Errorf("fault = %+v, want nil", got)
			case tt.want != "" && (got == nil || got.Code != tt.want):
				t.Errorf("fault = %+v, want code %s", got, tt.want)
			}
		})
	}
}
