// Package billingapi accepts orders over HTTP and publishes them to
// billing_queue. It answers 200 only once RabbitMQ has confirmed the
// message, so a 200 means the order is safe in a durable queue.
package billingapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/billingmsg"
	"moviestream/pkg/broker"
	"moviestream/pkg/errs"
	"moviestream/pkg/ginweb"
	"moviestream/pkg/web"
)

// IdempotencyKeyHeader lets a client retry a request safely: the key becomes
// the message_id, and billing stores one order per message_id.
const IdempotencyKeyHeader = "Idempotency-Key"

// MaxIdempotencyKeyLen bounds the key, which is stored with the order.
const MaxIdempotencyKeyLen = 255

// Publisher is what the handler needs from the broker: publishing to
// billing_queue with a confirm.
type Publisher interface {
	Publish(ctx context.Context, msg amqp.Publishing) error
}

// Handler serves POST /api/billing.
type Handler struct {
	pub     Publisher
	timeout time.Duration
	metrics *Metrics
}

// New returns a handler publishing through pub, waiting at most timeout for
// the broker's confirm, and recording each order's outcome in m (nil
// records nothing).
func New(pub Publisher, timeout time.Duration, m *Metrics) *Handler {
	return &Handler{pub: pub, timeout: timeout, metrics: m}
}

var errInvalidKey = errors.New("invalid " + IdempotencyKeyHeader + " header")

// Post validates the order with the same rules billing applies, publishes
// the compact JSON body and answers after the confirm. The request's
// X-Request-ID travels as the message's correlation_id, so billing's log
// lines about the order carry the same id as the gateway's.
func (h *Handler) Post(c *gin.Context) {
	id, body, err := h.read(c)
	if err != nil {
		h.metrics.invalid()
		ginweb.Fail(c, err, classify)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.timeout)
	defer cancel()
	start := time.Now()
	err = h.pub.Publish(ctx, amqp.Publishing{
		ContentType:   "application/json",
		MessageId:     id,
		CorrelationId: c.GetHeader(web.RequestIDHeader),
		Timestamp:     start.UTC(),
		AppId:         "gateway",
		Body:          body,
	})
	h.metrics.published(err, time.Since(start))
	if err != nil {
		ginweb.Fail(c, err, classify)
		return
	}
	c.Data(http.StatusOK, jsonContentType, postedBody(id))
}

// jsonContentType is what gin's c.JSON sends.
const jsonContentType = "application/json; charset=utf-8"

// postedBody is {"message":"Message posted","message_id":id}, byte for byte
// what encoding/json writes, without its reflection: this answer is the
// hot path. An id is printable ASCII (messageID), so only the quote and
// the backslash need escaping, and <, > and & are written as \u003c,
// \u003e and \u0026 as encoding/json does by default.
func postedBody(id string) []byte {
	const head, tail = `{"message":"Message posted","message_id":"`, `"}`
	b := make([]byte, 0, len(head)+len(id)+len(tail)+8)
	b = append(b, head...)
	for i := 0; i < len(id); i++ {
		switch c := id[i]; c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '<', '>', '&':
			b = append(b, `\u00`...)
			b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, tail...)
}

const hexDigits = "0123456789abcdef"

// read returns the message id and the compact body of a valid request.
func (h *Handler) read(c *gin.Context) (string, []byte, error) {
	if err := web.RequireJSON(c.Request); err != nil {
		return "", nil, err
	}
	id, err := messageID(c.GetHeader(IdempotencyKeyHeader))
	if err != nil {
		return "", nil, err
	}
	body, err := web.ReadBody(c.Writer, c.Request, billingmsg.MaxBodyBytes)
	if err != nil {
		return "", nil, err
	}
	if _, err := billingmsg.Parse(body); err != nil {
		return "", nil, err
	}
	if body, err = compactJSON(body); err != nil {
		return "", nil, fmt.Errorf("%w: %v", billingmsg.ErrMalformed, err)
	}
	return id, body, nil
}

// compactJSON returns valid JSON without insignificant whitespace. A body
// without a single whitespace byte, as clients usually send, is compact
// already and is returned as it is, without a second pass and a copy;
// any other body (a space inside a string included) goes through
// json.Compact.
func compactJSON(body []byte) ([]byte, error) {
	if bytes.IndexAny(body, " \t\r\n") < 0 {
		return body, nil
	}
	out := bytes.NewBuffer(make([]byte, 0, len(body)))
	if err := json.Compact(out, body); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// messageID returns the client's idempotency key, or a fresh random id.
func messageID(key string) (string, error) {
	if key == "" {
		return web.NewID(), nil
	}
	if len(key) > MaxIdempotencyKeyLen {
		return "", fmt.Errorf("%w: at most %d characters", errInvalidKey, MaxIdempotencyKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return "", fmt.Errorf("%w: printable ASCII without spaces only", errInvalidKey)
		}
	}
	return key, nil
}

// classify is this adapter's part of the error table: what only order
// intake knows. Field rules, decoding and media type errors are shared
// (web.Classify).
func classify(err error) *errs.Error {
	switch {
	case errors.Is(err, billingmsg.ErrMalformed):
		return &errs.Error{Code: errs.InvalidJSON, Message: err.Error()}
	case errors.Is(err, errInvalidKey):
		return &errs.Error{Code: errs.InvalidHeader, Message: err.Error(), Field: IdempotencyKeyHeader}
	case errors.Is(err, broker.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &errs.Error{Code: errs.Unavailable, Message: "message broker unavailable; the order was not accepted, retry later"}
	}
	return nil
}
