package billingapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/billingmsg"
	"moviestream/pkg/broker"
	"moviestream/pkg/broker/brokertest"
	"moviestream/pkg/errs"
	"moviestream/pkg/ginweb"
	"moviestream/pkg/testenv"
	"moviestream/pkg/web"
	"moviestream/services/gateway/internal/billingapi"
)

const (
	testQueue      = "billing_queue.test"
	publishTimeout = 2 * time.Second
	validBody      = `{"user_id":"3","number_of_items":"5","total_amount":"180"}`
)

// fakePublisher records what the handler publishes and answers err.
type fakePublisher struct {
	err error

	mu    sync.Mutex
	calls []publishCall
}

type publishCall struct {
	msg         amqp.Publishing
	hasDeadline bool
}

func (f *fakePublisher) Publish(ctx context.Context, msg amqp.Publishing) error {
	_, ok := ctx.Deadline()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, publishCall{msg: msg, hasDeadline: ok})
	return f.err
}

func (f *fakePublisher) published() []publishCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]publishCall(nil), f.calls...)
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newEngine mounts the handler on the shared engine, as the gateway does.
func newEngine(t testing.TB, pub billingapi.Publisher, timeout time.Duration) *gin.Engine {
	t.Helper()
	e, err := ginweb.NewEngine(discardLog(), nil)
	if err != nil {
		t.Fatalf("engine: %v", err)
	}
	e.POST("/api/billing", billingapi.New(pub, timeout, nil).Post)
	return e
}

type request struct {
	body        string
	contentType string // "-" = no Content-Type header
	key         string // Idempotency-Key; "" = none
}

func post(t testing.TB, h http.Handler, r request) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/billing", strings.NewReader(r.body))
	switch r.contentType {
	case "":
		req.Header.Set("Content-Type", "application/json")
	case "-":
	default:
		req.Header.Set("Content-Type", r.contentType)
	}
	if r.key != "" {
		req.Header.Set(billingapi.IdempotencyKeyHeader, r.key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

type posted struct {
	Message   string `json:"message"`
	MessageID string `json:"message_id"`
}

// decode reads a response body strictly into v.
// wantUnavailable checks rec is the 503 of a broker that cannot take the
// order.
func wantUnavailable(t testing.TB, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503; body %s", rec.Code, rec.Body)
	}
	var got web.ErrorBody
	decode(t, rec, &got)
	if got.Error.Code != errs.Unavailable {
		t.Errorf("code = %q, want %q", got.Error.Code, errs.Unavailable)
	}
}

func decode(t testing.TB, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode response %q: %v", rec.Body.String(), err)
	}
}

// order builds a body from the three fields' raw JSON; "" leaves a field out.
func order(userID, items, total string) string {
	var parts []string
	for _, f := range []struct{ name, raw string }{
		{billingmsg.FieldUserID, userID},
		{billingmsg.FieldNumberOfItems, items},
		{billingmsg.FieldTotalAmount, total},
	} {
		if f.raw != "" {
			parts = append(parts, fmt.Sprintf("%q:%s", f.name, f.raw))
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func compact(t testing.TB, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("compact %q: %v", s, err)
	}
	return b.String()
}

// padded returns a valid order of exactly size bytes, padded in an unknown field.
func padded(size int) string {
	head := `{"user_id":"3","number_of_items":5,"total_amount":"180","pad":"`
	tail := `"}`
	return head + strings.Repeat("x", size-len(head)-len(tail)) + tail
}

func TestPostAccepted(t *testing.T) {
	t.Parallel()
	key255 := strings.Repeat("k", billingapi.MaxIdempotencyKeyLen)
	tests := []struct {
		name     string
		req      request
		wantBody string // published body; "" = the compact request body
		wantID   string // "" = a generated id
	}{
		{name: "documented string example", req: request{body: validBody}, wantBody: validBody},
		{name: "numbers instead of strings",
			req:      request{body: `{"user_id":3,"number_of_items":5,"total_amount":180}`},
			wantBody: `{"user_id":3,"number_of_items":5,"total_amount":180}`},
		{name: "two decimals", req: request{body: order(`"u-1"`, `1`, `"0.99"`)}},
		{name: "max items", req: request{body: order(`"3"`, `2147483647`, `9999999999.99`)}},
		{name: "zero total", req: request{body: order(`"3"`, `1`, `"0"`)}},
		{name: "unknown fields ignored and kept",
			req:      request{body: `{"user_id":"3","number_of_items":"5","total_amount":"180","coupon":"X"}`},
			wantBody: `{"user_id":"3","number_of_items":"5","total_amount":"180","coupon":"X"}`},
		{name: "spaces and newlines are compacted",
			req:      request{body: "\n {\n\t\"user_id\" : \"3\",\r\n  \"number_of_items\": \"5\" ,\n  \"total_amount\":\t\"180\"\n}\n "},
			wantBody: validBody},
		{name: "spaces inside strings kept",
			req:      request{body: `{ "user_id": "Jane Doe", "number_of_items": 1, "total_amount": "1.5" }`},
			wantBody: `{"user_id":"Jane Doe","number_of_items":1,"total_amount":"1.5"}`},
		{name: "user_id of 64 characters", req: request{body: order(`"`+strings.Repeat("é", 64)+`"`, `1`, `1`)}},
		{name: "content type with charset", req: request{body: validBody, contentType: "application/json; charset=utf-8"}},
		{name: "content type +json", req: request{body: validBody, contentType: "application/vnd.moviestream+json"}},
		{name: "body of exactly 64 KiB", req: request{body: padded(billingmsg.MaxBodyBytes)}},
		{name: "idempotency key becomes message id", req: request{body: validBody, key: "order-2024-000001"}, wantID: "order-2024-000001"},
		{name: "idempotency key of 255 characters", req: request{body: validBody, key: key255}, wantID: key255},
		{name: "idempotency key with punctuation", req: request{body: validBody, key: "a:b/c=d~!"}, wantID: "a:b/c=d~!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pub := &fakePublisher{}
			rec := post(t, newEngine(t, pub, publishTimeout), tt.req)
			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200; body %s", rec.Code, rec.Body)
			}
			var got posted
			decode(t, rec, &got)

			calls := pub.published()
			if len(calls) != 1 {
				t.Fatalf("published %d messages, want 1", len(calls))
			}
			call := calls[0]
			wantBody := tt.wantBody
			if wantBody == "" {
				wantBody = compact(t, tt.req.body)
			}
			if diff := cmp.Diff(wantBody, string(call.msg.Body)); diff != "" {
				t.Errorf("published body (-want +got):\n%s", diff)
			}
			if !call.hasDeadline {
				t.Error("Publish got a context without deadline; the confirm wait is unbounded")
			}
			if call.msg.ContentType != "application/json" {
				t.Errorf("ContentType = %q, want application/json", call.msg.ContentType)
			}
			if call.msg.Timestamp.IsZero() {
				t.Error("Timestamp not set")
			}
			wantID := tt.wantID
			if wantID == "" {
				wantID = call.msg.MessageId
				if wantID == "" {
					t.Error("MessageId is empty")
				}
			}
			if call.msg.MessageId != wantID {
				t.Errorf("MessageId = %q, want %q", call.msg.MessageId, wantID)
			}
			if diff := cmp.Diff(posted{Message: "Message posted", MessageID: wantID}, got); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPostGeneratesDistinctIDs(t *testing.T) {
	t.Parallel()
	pub := &fakePublisher{}
	h := newEngine(t, pub, publishTimeout)
	const n = 50
	for range n {
		if rec := post(t, h, request{body: validBody}); rec.Code != http.StatusOK {
			t.Fatalf("status = %d, want 200; body %s", rec.Code, rec.Body)
		}
	}
	seen := map[string]bool{}
	for _, c := range pub.published() {
		if c.msg.MessageId == "" || seen[c.msg.MessageId] {
			t.Errorf("MessageId %q is empty or repeated", c.msg.MessageId)
		}
		seen[c.msg.MessageId] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct ids for %d messages", len(seen), n)
	}
}

func TestPostRejected(t *testing.T) {
	t.Parallel()
	validation := func(field string) web.ErrorDetail {
		return web.ErrorDetail{Code: errs.Validation, Field: field}
	}
	invalidJSON := web.ErrorDetail{Code: errs.InvalidJSON}
	const (
		user  = billingmsg.FieldUserID
		items = billingmsg.FieldNumberOfItems
		total = billingmsg.FieldTotalAmount
	)
	tests := []struct {
		name   string
		req    request
		status int
		want   web.ErrorDetail // Message is checked to be non-empty only
	}{
		// Missing, null and wrongly typed fields.
		{name: "missing user_id", req: request{body: order(``, `"5"`, `"180"`)}, status: 400, want: validation(user)},
		{name: "missing number_of_items", req: request{body: order(`"3"`, ``, `"180"`)}, status: 400, want: validation(items)},
		{name: "missing total_amount", req: request{body: order(`"3"`, `"5"`, ``)}, status: 400, want: validation(total)},
		{name: "empty object", req: request{body: `{}`}, status: 400, want: validation(user)},
		{name: "null user_id", req: request{body: order(`null`, `"5"`, `"180"`)}, status: 400, want: validation(user)},
		{name: "null number_of_items", req: request{body: order(`"3"`, `null`, `"180"`)}, status: 400, want: validation(items)},
		{name: "null total_amount", req: request{body: order(`"3"`, `"5"`, `null`)}, status: 400, want: validation(total)},
		{name: "bool user_id", req: request{body: order(`true`, `"5"`, `"180"`)}, status: 400, want: validation(user)},
		{name: "bool number_of_items", req: request{body: order(`"3"`, `false`, `"180"`)}, status: 400, want: validation(items)},
		{name: "array number_of_items", req: request{body: order(`"3"`, `[5]`, `"180"`)}, status: 400, want: validation(items)},
		{name: "array user_id", req: request{body: order(`["3"]`, `"5"`, `"180"`)}, status: 400, want: validation(user)},
		{name: "object total_amount", req: request{body: order(`"3"`, `"5"`, `{"value":180}`)}, status: 400, want: validation(total)},
		{name: "object user_id", req: request{body: order(`{}`, `"5"`, `"180"`)}, status: 400, want: validation(user)},
		// number_of_items rules.
		{name: "number_of_items 0", req: request{body: order(`"3"`, `0`, `"180"`)}, status: 400, want: validation(items)},
		{name: "number_of_items -1", req: request{body: order(`"3"`, `-1`, `"180"`)}, status: 400, want: validation(items)},
		{name: "number_of_items \"-1\"", req: request{body: order(`"3"`, `"-1"`, `"180"`)}, status: 400, want: validation(items)},
		{name: "number_of_items 1.5", req: request{body: order(`"3"`, `1.5`, `"180"`)}, status: 400, want: validation(items)},
		{name: "number_of_items abc", req: request{body: order(`"3"`, `"abc"`, `"180"`)}, status: 400, want: validation(items)},
		{name: "number_of_items empty string", req: request{body: order(`"3"`, `""`, `"180"`)}, status: 400, want: validation(items)},
		{name: "number_of_items 2147483648", req: request{body: order(`"3"`, `2147483648`, `"180"`)}, status: 400, want: validation(items)},
		{name: "number_of_items 1e2", req: request{body: order(`"3"`, `1e2`, `"180"`)}, status: 400, want: validation(items)},
		// total_amount rules.
		{name: "total_amount -1", req: request{body: order(`"3"`, `"5"`, `-1`)}, status: 400, want: validation(total)},
		{name: "total_amount \"-0.01\"", req: request{body: order(`"3"`, `"5"`, `"-0.01"`)}, status: 400, want: validation(total)},
		{name: "total_amount 1.234", req: request{body: order(`"3"`, `"5"`, `1.234`)}, status: 400, want: validation(total)},
		{name: "total_amount 12,50", req: request{body: order(`"3"`, `"5"`, `"12,50"`)}, status: 400, want: validation(total)},
		{name: "total_amount 1e2", req: request{body: order(`"3"`, `"5"`, `1e2`)}, status: 400, want: validation(total)},
		{name: "total_amount too large", req: request{body: order(`"3"`, `"5"`, `"10000000000"`)}, status: 400, want: validation(total)},
		{name: "total_amount empty string", req: request{body: order(`"3"`, `"5"`, `""`)}, status: 400, want: validation(total)},
		// user_id rules.
		{name: "user_id empty", req: request{body: order(`""`, `"5"`, `"180"`)}, status: 400, want: validation(user)},
		{name: "user_id 65 characters", req: request{body: order(`"`+strings.Repeat("u", 65)+`"`, `"5"`, `"180"`)}, status: 400, want: validation(user)},
		{name: "user_id whitespace only", req: request{body: order(`" \t\n "`, `"5"`, `"180"`)}, status: 400, want: validation(user)},
		{name: "user_id control character", req: request{body: order(`"a\u0000b"`, `"5"`, `"180"`)}, status: 400, want: validation(user)},
		// Not a JSON object.
		{name: "malformed json", req: request{body: `{"user_id":"3",`}, status: 400, want: invalidJSON},
		{name: "single quotes", req: request{body: `{'user_id':'3'}`}, status: 400, want: invalidJSON},
		{name: "empty body", req: request{body: ``}, status: 400, want: invalidJSON},
		{name: "whitespace body", req: request{body: " \n"}, status: 400, want: invalidJSON},
		{name: "json array", req: request{body: `[` + validBody + `]`}, status: 400, want: invalidJSON},
		{name: "json string", req: request{body: `"hello"`}, status: 400, want: invalidJSON},
		{name: "json null", req: request{body: `null`}, status: 400, want: invalidJSON},
		{name: "trailing garbage", req: request{body: validBody + ` x`}, status: 400, want: invalidJSON},
		{name: "two objects", req: request{body: validBody + validBody}, status: 400, want: invalidJSON},
		// Size and media type.
		{name: "body over 64 KiB", req: request{body: padded(billingmsg.MaxBodyBytes + 1)}, status: 413,
			want: web.ErrorDetail{Code: errs.TooLarge}},
		{name: "body of 1 MiB", req: request{body: padded(1 << 20)}, status: 413,
			want: web.ErrorDetail{Code: errs.TooLarge}},
		{name: "text/plain", req: request{body: validBody, contentType: "text/plain"}, status: 415,
			want: web.ErrorDetail{Code: errs.MediaType}},
		{name: "form encoded", req: request{body: validBody, contentType: "application/x-www-form-urlencoded"}, status: 415,
			want: web.ErrorDetail{Code: errs.MediaType}},
		{name: "no content type", req: request{body: validBody, contentType: "-"}, status: 415,
			want: web.ErrorDetail{Code: errs.MediaType}},
		{name: "unparsable content type", req: request{body: validBody, contentType: "application/json; charset"}, status: 415,
			want: web.ErrorDetail{Code: errs.MediaType}},
		// Idempotency-Key.
		{name: "idempotency key with space", req: request{body: validBody, key: "order 1"}, status: 400,
			want: web.ErrorDetail{Code: errs.InvalidHeader, Field: billingapi.IdempotencyKeyHeader}},
		{name: "idempotency key of 256 characters", req: request{body: validBody, key: strings.Repeat("k", 256)}, status: 400,
			want: web.ErrorDetail{Code: errs.InvalidHeader, Field: billingapi.IdempotencyKeyHeader}},
		{name: "idempotency key not ascii", req: request{body: validBody, key: "clé"}, status: 400,
			want: web.ErrorDetail{Code: errs.InvalidHeader, Field: billingapi.IdempotencyKeyHeader}},
		{name: "idempotency key with tab", req: request{body: validBody, key: "a\tb"}, status: 400,
			want: web.ErrorDetail{Code: errs.InvalidHeader, Field: billingapi.IdempotencyKeyHeader}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pub := &fakePublisher{}
			rec := post(t, newEngine(t, pub, publishTimeout), tt.req)
			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			var got web.ErrorBody
			decode(t, rec, &got)
			if diff := cmp.Diff(tt.want, got.Error, cmpopts.IgnoreFields(web.ErrorDetail{}, "Message")); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if got.Error.Message == "" {
				t.Error("error message is empty")
			}
			if n := len(pub.published()); n != 0 {
				t.Errorf("a rejected request was published %d times", n)
			}
		})
	}
}

func TestPostPublishFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		status int
		code   errs.Code
	}{
		{name: "unavailable", err: broker.ErrUnavailable, status: 503, code: errs.Unavailable},
		{name: "unavailable wrapped", err: fmt.Errorf("%w: not connected", broker.ErrUnavailable), status: 503, code: errs.Unavailable},
		{name: "nacked", err: broker.ErrNacked, status: 503, code: errs.Unavailable},
		{name: "unroutable", err: broker.ErrUnroutable, status: 503, code: errs.Unavailable},
		{name: "confirm deadline", err: context.DeadlineExceeded, status: 503, code: errs.Unavailable},
		{name: "confirm deadline wrapped", err: fmt.Errorf("%w: waiting for confirm: %w", broker.ErrUnavailable, context.DeadlineExceeded),
			status: 503, code: errs.Unavailable},
		{name: "unexpected error hidden", err: errors.New("amqp: secret internal detail"), status: 500, code: errs.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pub := &fakePublisher{err: tt.err}
			rec := post(t, newEngine(t, pub, publishTimeout), request{body: validBody, key: "retry-me"})
			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			raw := rec.Body.String()
			var got web.ErrorBody
			decode(t, rec, &got)
			if got.Error.Code != tt.code || got.Error.Message == "" {
				t.Errorf("error = %+v, want code %q with a message", got.Error, tt.code)
			}
			if strings.Contains(raw, "amqp") || strings.Contains(raw, "secret") {
				t.Errorf("response leaks the internal error: %s", raw)
			}
			if n := len(pub.published()); n != 1 {
				t.Errorf("published %d times, want 1", n)
			}
		})
	}
}

// TestPostClientGone: when the client disconnects while the handler waits
// for the confirm, nothing is written for it (the outcome is only logged).
func TestPostClientGone(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := publishFunc(func(context.Context, amqp.Publishing) error {
		cancel() // the client hangs up mid-publish
		return fmt.Errorf("%w: waiting for confirm: %w", broker.ErrUnavailable, context.Canceled)
	})
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/api/billing", strings.NewReader(validBody))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	newEngine(t, pub, publishTimeout).ServeHTTP(rec, req)
	if rec.Code >= 500 || rec.Body.Len() != 0 {
		t.Errorf("got %d %q for a client that left; want nothing written", rec.Code, rec.Body)
	}
}

type publishFunc func(ctx context.Context, msg amqp.Publishing) error

func (f publishFunc) Publish(ctx context.Context, msg amqp.Publishing) error {
	return f(ctx, msg)
}

func TestPostRabbitMQ(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	tests := []struct {
		name     string
		req      request
		wantBody string
	}{
		{name: "documented example with key", req: request{body: validBody, key: "rabbit-key-1"}, wantBody: validBody},
		{name: "generated id, compacted body",
			req:      request{body: "{ \"user_id\": 7,\n \"number_of_items\": 2,\n \"total_amount\": \"19.90\" }"},
			wantBody: `{"user_id":7,"number_of_items":2,"total_amount":"19.90"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			topo := brokertest.Topology(t, cfg)
			pub := brokertest.StartPublisher(t, cfg, topo)

			rec := post(t, newEngine(t, pub, 5*time.Second), tt.req)
			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200; body %s", rec.Code, rec.Body)
			}
			var resp posted
			decode(t, rec, &resp)
			if tt.req.key != "" && resp.MessageID != tt.req.key {
				t.Errorf("message_id = %q, want the idempotency key %q", resp.MessageID, tt.req.key)
			}

			ch := brokertest.Channel(t, cfg)
			d := brokertest.Get(t, ch, topo.Queue, 5*time.Second)
			type props struct {
				DeliveryMode uint8
				MessageID    string
				ContentType  string
				AppID        string
				Body         string
			}
			want := props{DeliveryMode: amqp.Persistent, MessageID: resp.MessageID, ContentType: "application/json",
				AppID: "gateway", Body: tt.wantBody}
			got := props{DeliveryMode: d.DeliveryMode, MessageID: d.MessageId, ContentType: d.ContentType,
				AppID: d.AppId, Body: string(d.Body)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("delivered message (-want +got):\n%s", diff)
			}
			if resp.MessageID == "" {
				t.Error("message_id is empty")
			}
			if d.Timestamp.IsZero() {
				t.Error("timestamp not set")
			}
			if n := brokertest.Depth(t, ch, topo.Queue); n != 0 {
				t.Errorf("%d more messages in the queue, want exactly one published", n)
			}
		})
	}
}

// TestPostRabbitMQUnroutable: a queue deleted under a running gateway must
// not yield a 200, since nothing would ever consume the order.
func TestPostRabbitMQUnroutable(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	topo := brokertest.Topology(t, cfg)
	pub := brokertest.StartPublisher(t, cfg, topo)
	if _, err := brokertest.Channel(t, cfg).QueueDelete(topo.Queue, false, false, false); err != nil {
		t.Fatalf("delete the queue: %v", err)
	}

	rec := post(t, newEngine(t, pub, 5*time.Second), request{body: validBody})
	wantUnavailable(t, rec)
}

// TestPostBrokerUnreachable needs no broker: the publisher points at a port
// nothing listens on. The handler must answer 503 at once rather than wait
// out its (long) publish timeout.
func TestPostBrokerUnreachable(t *testing.T) {
	t.Parallel()
	port := strconv.Itoa(testenv.FreePort(t)) // nothing listens here
	cfg := broker.Config{Addrs: []string{"127.0.0.1:" + port}, VHost: "nowhere", User: "nobody", Password: "unused", Name: "test:" + t.Name()}
	pub := brokertest.RunPublisher(t, cfg, broker.Topology{Queue: testQueue})
	if pub.Status().Connected {
		t.Fatal("publisher reports connected to a closed port")
	}

	h := newEngine(t, pub, time.Hour)
	answered := make(chan *httptest.ResponseRecorder, 1)
	go func() { answered <- post(t, h, request{body: validBody}) }()
	var rec *httptest.ResponseRecorder
	select {
	case rec = <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not answer while the broker is unreachable")
	}
	wantUnavailable(t, rec)
}
