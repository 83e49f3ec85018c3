// Package errs is the vocabulary of failures the services share: a small
// closed set of codes that every transport maps to its own status in one
// table (HTTP: pkg/web), and FieldError, the error that names the field that
// broke a rule. It is a leaf: domain packages import it without pulling in a
// web or database library.
package errs

import "fmt"

// Code classifies a failure for clients. The values are the "code" of the
// JSON error body, documented in openapi.yaml.
type Code string

// The codes, and (in pkg/web) their HTTP statuses.
const (
	InvalidJSON      Code = "invalid_json"           // 400
	Validation       Code = "validation_failed"      // 400
	InvalidID        Code = "invalid_id"             // 400
	InvalidHeader    Code = "invalid_header"         // 400
	InvalidPath      Code = "invalid_path"           // 400
	IncompleteBody   Code = "incomplete_body"        // 400
	Unauthorized     Code = "unauthorized"           // 401
	NotFound         Code = "not_found"              // 404
	MethodNotAllowed Code = "method_not_allowed"     // 405
	TooLarge         Code = "payload_too_large"      // 413
	MediaType        Code = "unsupported_media_type" // 415
	Internal         Code = "internal_error"         // 500
	BadGateway       Code = "bad_gateway"            // 502
	Unavailable      Code = "service_unavailable"    // 503
	GatewayTimeout   Code = "gateway_timeout"        // 504
)

// Error is a classified failure: what a client may be told about it. An
// adapter builds one from a domain error; the transport writes it.
type Error struct {
	Code    Code
	Message string
	// Field names the offending field or header, when there is one.
	Field string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// New returns an Error with a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldError names the field that broke a rule and why. Kind, when set, is
// the domain's sentinel (movie.ErrInvalid, billingmsg.ErrInvalid), so that
// errors.Is(err, domain.ErrInvalid) holds for every field error it makes.
type FieldError struct {
	Field  string
	Reason string
	Kind   error
}

// Invalid returns a FieldError of the given kind.
func Invalid(kind error, field, reason string) *FieldError {
	return &FieldError{Field: field, Reason: reason, Kind: kind}
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap returns Kind.
func (e *FieldError) Unwrap() error { return e.Kind }
