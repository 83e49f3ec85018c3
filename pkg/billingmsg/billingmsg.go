// Package billingmsg is the contract of a billing_queue message: the JSON
// order body a client sends to the gateway and billing turns into a row. The
// rules live here, once, because the gateway must refuse exactly what billing
// would refuse; otherwise a 200 from the gateway could end in a dead letter.
package billingmsg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"moviestream/pkg/errs"
)

// Limits of an order. MaxTotalCents matches the orders.total_amount column,
// numeric(12,2): ten digits before the point, two after.
const (
	MaxBodyBytes  = 64 << 10
	MaxUserIDLen  = 64
	MaxItems      = 1<<31 - 1
	MaxTotalCents = 999_999_999_999
)

// ErrInvalid is wrapped by every error Parse returns: the message can never
// become an order, so retrying it is pointless.
var ErrInvalid = errors.New("invalid order message")

// ErrMalformed means the body is not a JSON object at all (or too large).
var ErrMalformed = fmt.Errorf("%w: malformed body", ErrInvalid)

// invalid returns the error for a field that broke a rule; it matches
// ErrInvalid.
func invalid(field, reason string) error { return errs.Invalid(ErrInvalid, field, reason) }

// Order is a validated order.
type Order struct {
	UserID        string
	NumberOfItems int32
	TotalAmount   Amount
}

// Amount is money in hundredths (cents). It is never a float: 0.1+0.2 must
// stay 0.30.
type Amount int64

// String formats the amount as a decimal with two places, e.g. "180.00",
// which PostgreSQL reads exactly into numeric(12,2).
func (a Amount) String() string {
	sign := ""
	if a < 0 {
		sign, a = "-", -a
	}
	return fmt.Sprintf("%s%d.%02d", sign, a/100, a%100)
}

// Field names in the JSON body.
const (
	FieldUserID        = "user_id"
	FieldNumberOfItems = "number_of_items"
	FieldTotalAmount   = "total_amount"
)

// Parse validates a message body. Each field may be a JSON string or number:
// the documented example sends {"user_id":"3","number_of_items":"5",
// "total_amount":"180"}. Unknown fields are ignored.
func Parse(body []byte) (Order, error) {
	if len(body) > MaxBodyBytes {
		return Order{}, fmt.Errorf("%w: body is %d bytes, limit is %d", ErrMalformed, len(body), MaxBodyBytes)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Order{}, fmt.Errorf("%w: expected a JSON object", ErrMalformed)
	}
	if !json.Valid(trimmed) {
		return Order{}, fmt.Errorf("%w: invalid JSON", ErrMalformed)
	}
	// encoding/json would silently turn invalid UTF-8 into U+FFFD, storing a
	// user_id other than the one sent.
	if !utf8.Valid(trimmed) {
		return Order{}, fmt.Errorf("%w: body is not valid UTF-8", ErrMalformed)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		return Order{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}

	var o Order
	userID, err := scalar(fields, FieldUserID)
	if err != nil {
		return Order{}, err
	}
	if o.UserID, err = parseUserID(userID); err != nil {
		return Order{}, err
	}

	items, err := scalar(fields, FieldNumberOfItems)
	if err != nil {
		return Order{}, err
	}
	if o.NumberOfItems, err = parseItems(items); err != nil {
		return Order{}, err
	}

	total, err := scalar(fields, FieldTotalAmount)
	if err != nil {
		return Order{}, err
	}
	if o.TotalAmount, err = ParseAmount(total); err != nil {
		return Order{}, invalid(FieldTotalAmount, err.Error())
	}
	return o, nil
}

// scalar returns the text of a field that is a JSON string or number.
func scalar(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok || string(raw) == "null" {
		return "", invalid(name, "is required")
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", invalid(name, "is not a valid JSON string")
		}
		return strings.TrimSpace(s), nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return string(raw), nil
	default:
		return "", invalid(name, "must be a string or a number")
	}
}

func parseUserID(s string) (string, error) {
	switch {
	case s == "":
		return "", invalid(FieldUserID, "must not be empty")
	case utf8.RuneCountInString(s) > MaxUserIDLen:
		return "", invalid(FieldUserID, fmt.Sprintf("must be at most %d characters", MaxUserIDLen))
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "", invalid(FieldUserID, "must not contain control characters")
	}
	return s, nil
}

func parseItems(s string) (int32, error) {
	if !allDigits(strings.TrimPrefix(s, "-")) {
		return 0, invalid(FieldNumberOfItems, "must be a whole number")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > MaxItems {
		return 0, invalid(FieldNumberOfItems, fmt.Sprintf("must be at most %d", MaxItems))
	}
	if n < 1 {
		return 0, invalid(FieldNumberOfItems, "must be at least 1")
	}
	return int32(n), nil
}

// ParseAmount reads a non-negative decimal with at most two decimal places,
// such as "180", "180.5" or "0.99", into cents.
func ParseAmount(s string) (Amount, error) {
	negative := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, hasPoint := strings.Cut(s, ".")
	if !allDigits(whole) || (hasPoint && !allDigits(frac)) {
		return 0, errors.New("must be a decimal number such as 180 or 180.50")
	}
	if len(frac) > 2 {
		return 0, errors.New("must have at most 2 decimal places")
	}
	tooLarge := fmt.Errorf("must be at most %s", Amount(MaxTotalCents))
	whole = strings.TrimLeft(whole, "0")
	// More digits than the limit has cannot fit, and could overflow int64.
	if len(whole) > len(strconv.FormatInt(MaxTotalCents/100, 10)) {
		return 0, tooLarge
	}
	cents := int64(0)
	if whole != "" {
		w, _ := strconv.ParseInt(whole, 10, 64) // bounded above: cannot fail
		cents = w * 100
	}
	frac += strings.Repeat("0", 2-len(frac))
	f, _ := strconv.ParseInt(frac, 10, 64) // two digits: cannot fail
	cents += f
	if negative && cents != 0 {
		return 0, errors.New("must not be negative")
	}
	if cents > MaxTotalCents {
		return 0, tooLarge
	}
	return Amount(cents), nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
