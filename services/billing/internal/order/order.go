// Package order is billing's domain: an order is one accepted billing
// message. The message rules themselves are shared with the gateway in
// pkg/billingmsg; this package adds the identity that makes writes
// idempotent and the storage interface.
package order

import (
	"context"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"moviestream/pkg/billingmsg"
	"moviestream/pkg/errs"
)

// Order is one row of the orders table: a validated order message and the
// identity that makes writing it idempotent.
type Order struct {
	// MessageID is the AMQP message_id. Orders with the same non-empty
	// MessageID are one order: a redelivery writes nothing new. A message
	// published by hand without an id is stored with none.
	MessageID string
	billingmsg.Order
}

// ErrUnavailable is wrapped by stores when the database cannot be reached;
// the write may succeed later.
var ErrUnavailable = errors.New("order storage unavailable")

// FromMessage validates a message body and returns the order it describes.
// Errors wrap billingmsg.ErrInvalid: such a message never becomes an order.
func FromMessage(messageID string, body []byte) (Order, error) {
	// AMQP allows any bytes in message_id; PostgreSQL text does not.
	if !utf8.ValidString(messageID) || strings.IndexFunc(messageID, unicode.IsControl) >= 0 {
		return Order{}, errs.Invalid(billingmsg.ErrInvalid, "message_id", "must be printable UTF-8")
	}
	m, err := billingmsg.Parse(body)
	if err != nil {
		return Order{}, err
	}
	return Order{MessageID: messageID, Order: m}, nil
}

// Store persists orders.
type Store interface {
	// Save writes orders in one transaction, skipping any whose MessageID is
	// already stored, and reports how many rows were new. On error nothing
	// was written.
	Save(ctx context.Context, orders []Order) (inserted int64, err error)
}
