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

// Why a store did not write. A store wraps exactly one of them; an error
// wrapping neither is treated like ErrUnavailable.
var (
	// ErrRejected: the database refused an order for what the order itself
	// holds (a value out of range, a violated constraint), so writing it
	// again can only fail again. In a batch, at least one order is at
	// fault; not necessarily all of them.
	ErrRejected = errors.New("order rejected by the database")
	// ErrUnavailable: the write failed for a reason of the database's own:
	// unreachable, out of space or memory, read-only, a missing privilege
	// or table, a timeout or a lock. The same write may succeed later.
	ErrUnavailable = errors.New("order storage unavailable")
)

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
	// Save writes orders in one transaction. An order whose user already
	// has an order under the same non-empty MessageID is not written again:
	// a retry or redelivery of the same order is absorbed, and a different
	// order under a key its user already used is reported in Saved.Reused.
	// On error nothing was written, and the error wraps ErrRejected or
	// ErrUnavailable.
	Save(ctx context.Context, orders []Order) (Saved, error)
	// Probe reports whether the database would take an order now: it
	// writes one and rolls it back. Its error wraps ErrUnavailable.
	Probe(ctx context.Context) error
}

// Saved is what Save did with a batch.
type Saved struct {
	// Inserted counts the new rows.
	Inserted int64
	// Reused holds the indexes (into the batch) of the orders that reuse
	// their user's idempotency key for a different order. The first order
	// under a key stands; these are not written.
	Reused []int
}

// ErrKeyReused is the dead-letter reason of an order in Saved.Reused.
var ErrKeyReused = errors.New("idempotency key reused with a different order")
